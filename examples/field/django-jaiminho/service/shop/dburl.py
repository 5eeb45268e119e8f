"""DATABASE_URL (postgres://user[:password]@host:port/db[?param=value]) into a
Django DATABASES entry. Plain Python: serve.py checks the URL with it before
Django starts."""
from urllib.parse import parse_qsl, unquote, urlsplit


def database_from_url(url):
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"DATABASE_URL must start with postgres:// or postgresql://, not {url!r}")
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ValueError(f"DATABASE_URL names no database: {url!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"DATABASE_URL has a bad port: {url!r}") from exc
    db = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(port or ""),
    }
    options = dict(parse_qsl(parts.query))  # e.g. sslmode=disable, passed to libpq
    if options:
        db["OPTIONS"] = options
    return db
