"""Settings of the orders service: a minimal Django project with django-jaiminho
configured as its README ("Getting Started", step 4) shows.

Environment: DATABASE_URL (postgres://user@127.0.0.1:port/db), KAFKA_BOOTSTRAP,
TOPIC (serve.py checks them and PORT first); JAIMINHO_STRATEGY =
publish-on-commit (default, the library's) | keep-order;
JAIMINHO_PERSIST_ALL_EVENTS = false (default, the README's) | true;
LOG_LEVEL (default WARNING for jaiminho, see LOGGING).
"""
import os

from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder

from shop.dburl import database_from_url

STRATEGIES = ("publish-on-commit", "keep-order")


def _required(name):
    value = os.environ.get(name)
    if not value:
        raise ImproperlyConfigured(f"the environment variable {name} is not set")
    return value


def _flag(name, default):
    value = os.environ.get(name, "").strip().lower()
    if value == "":
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


# A fixed key: jaiminho signs every stored event with it (SIGN_EVENTS) and the
# relay verifies the signature (VERIFY_EVENTS_SIGNATURE). A key that changed
# across a restart would make every stored event "tampered" (BadSignature).
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or "dualcheck-field-django-jaiminho-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "jaiminho",  # step 2 of the README
    "orders",
]
# A JSON API: no sessions, no CSRF, no templates.
MIDDLEWARE = []
ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"

try:
    DATABASES = {"default": database_from_url(_required("DATABASE_URL"))}
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from exc
# Django's defaults: a connection per request (CONN_MAX_AGE = 0), autocommit
# outside transaction.atomic blocks.

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

# Where the publisher function sends the events (orders/events.py).
KAFKA_BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "")
ORDERS_TOPIC = os.environ.get("TOPIC", "")

# Step 4 of the README, as shown there; the strategy and PERSIST_ALL_EVENTS
# (both documented options) can be switched from the environment.
JAIMINHO_STRATEGY = os.environ.get("JAIMINHO_STRATEGY", "").strip() or "publish-on-commit"
if JAIMINHO_STRATEGY not in STRATEGIES:
    raise ImproperlyConfigured(
        f"JAIMINHO_STRATEGY must be one of {', '.join(STRATEGIES)}, not {JAIMINHO_STRATEGY!r}"
    )
JAIMINHO_CONFIG = {
    "PERSIST_ALL_EVENTS": _flag("JAIMINHO_PERSIST_ALL_EVENTS", False),
    "DELETE_AFTER_SEND": True,
    "DEFAULT_ENCODER": DjangoJSONEncoder,
    "PUBLISH_STRATEGY": JAIMINHO_STRATEGY,
}

# Everything on stderr. jaiminho logs every event at INFO (and the relay
# "No failed events found." on every empty round): WARNING keeps its failures
# ("Event failed to be published", "Events relaying are stuck ...") visible.
LOG_LEVEL = os.environ.get("LOG_LEVEL", "").strip().upper() or None
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL or "WARNING"},
    "loggers": {
        "orders": {"level": LOG_LEVEL or "INFO"},
        "serve": {"level": LOG_LEVEL or "INFO"},
        "waitress": {"level": LOG_LEVEL or "INFO"},
        "jaiminho": {"level": LOG_LEVEL or "WARNING"},
        "django": {"level": LOG_LEVEL or "WARNING"},
    },
}
