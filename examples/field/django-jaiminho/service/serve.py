#!/usr/bin/env python
"""Starts the orders service of the dualcheck field study for django-jaiminho:

1. checks the environment (exit 2 naming what is missing or malformed);
2. `migrate --noinput` (README step 3: jaiminho's jaiminho_event table and
   the orders table);
3. jaiminho's events_relay command in loop mode, in a background thread of
   this process, called the way the README's "Relay Command" section shows:
   call_command(events_relay.Command(), run_in_loop=True, loop_interval=...);
4. the WSGI app with waitress on 127.0.0.1:$PORT.

Environment: DATABASE_URL (postgres://user@127.0.0.1:port/db), KAFKA_BOOTSTRAP
(host:port,...), TOPIC, PORT (required); JAIMINHO_STRATEGY = publish-on-commit
(default) | keep-order; JAIMINHO_PERSIST_ALL_EVENTS = false (default) | true;
JAIMINHO_RELAY_INTERVAL = seconds between relay rounds (default: 0.1 with
keep-order, 1 with publish-on-commit, the README's values); WAITRESS_THREADS
(default 8); LOG_LEVEL. Logs go to stderr.
"""
import logging
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIRED = ("DATABASE_URL", "KAFKA_BOOTSTRAP", "TOPIC", "PORT")
STRATEGIES = ("publish-on-commit", "keep-order")
NAME = "django-jaiminho example"


def die(message):
    print(f"{NAME}: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def check_environment():
    """Everything serve.py and settings.py read, checked before Django starts."""
    missing = [name for name in REQUIRED if not os.environ.get(name)]
    if missing:
        die(
            f"missing environment variable(s): {', '.join(missing)}.\n"
            "It needs DATABASE_URL (postgres://user@127.0.0.1:port/db), KAFKA_BOOTSTRAP (host:port,...), "
            "TOPIC and PORT; optional: JAIMINHO_STRATEGY=publish-on-commit|keep-order (default "
            "publish-on-commit), JAIMINHO_PERSIST_ALL_EVENTS=false|true (default false), "
            "JAIMINHO_RELAY_INTERVAL (seconds), WAITRESS_THREADS, LOG_LEVEL."
        )
    port = os.environ["PORT"]
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        die(f"PORT must be a TCP port, not {port!r}")
    strategy = os.environ.get("JAIMINHO_STRATEGY", "").strip() or "publish-on-commit"
    if strategy not in STRATEGIES:
        die(f"JAIMINHO_STRATEGY must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    persist = os.environ.get("JAIMINHO_PERSIST_ALL_EVENTS", "").strip().lower()
    if persist not in ("", "1", "0", "true", "false", "yes", "no", "on", "off"):
        die(f"JAIMINHO_PERSIST_ALL_EVENTS must be true or false, not {persist!r}")
    interval = os.environ.get("JAIMINHO_RELAY_INTERVAL", "").strip()
    if interval:
        try:
            relay_interval = float(interval)
        except ValueError:
            relay_interval = -1.0
        if not relay_interval > 0:
            die(f"JAIMINHO_RELAY_INTERVAL must be a positive number of seconds, not {interval!r}")
    else:
        relay_interval = 0.1 if strategy == "keep-order" else 1.0
    threads = os.environ.get("WAITRESS_THREADS", "").strip() or "8"
    if not threads.isdigit() or int(threads) < 1:
        die(f"WAITRESS_THREADS must be a positive integer, not {threads!r}")

    sys.path.insert(0, HERE)
    from shop.dburl import database_from_url

    try:
        database_from_url(os.environ["DATABASE_URL"])
    except ValueError as exc:
        die(str(exc))
    return int(port), strategy, relay_interval, int(threads)


def run_relay(interval, log):
    """jaiminho's events_relay command in loop mode, as the README shows it.

    The command's loop has no error handling of its own: an exception (e.g.
    the database connection lost) ends it. The README runs it as a process of
    its own (a deployment, a cron job) that its supervisor starts again; here
    the thread starts it again after 1 s, with fresh database connections (what
    a new process would have)."""
    from django.core.management import call_command
    from django.db import connections

    from jaiminho.management.commands import events_relay

    while True:
        try:
            call_command(events_relay.Command(), run_in_loop=True, loop_interval=interval)
        except Exception:
            log.exception("events_relay stopped with an error; starting it again in 1 s")
        connections.close_all()  # this thread's connections only
        time.sleep(1)


def main():
    # stdout (migrate's and events_relay's prints) is a file under dualcheck:
    # line by line, so a SIGKILL loses nothing already written.
    sys.stdout.reconfigure(line_buffering=True)
    port, strategy, relay_interval, threads = check_environment()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

    import django

    django.setup()
    log = logging.getLogger("serve")

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", interactive=False)  # manage.py migrate --noinput
    connections.close_all()

    log.info(
        "jaiminho: PUBLISH_STRATEGY=%s PERSIST_ALL_EVENTS=%s DELETE_AFTER_SEND=%s; "
        "events_relay every %s s in a background thread",
        settings.JAIMINHO_CONFIG["PUBLISH_STRATEGY"],
        settings.JAIMINHO_CONFIG["PERSIST_ALL_EVENTS"],
        settings.JAIMINHO_CONFIG["DELETE_AFTER_SEND"],
        relay_interval,
    )
    threading.Thread(target=run_relay, args=(relay_interval, log), name="events_relay", daemon=True).start()

    from waitress import serve

    from shop.wsgi import application

    log.info("orders service on 127.0.0.1:%d (topic %s, waitress threads %d)", port, settings.ORDERS_TOPIC, threads)
    serve(application, host="127.0.0.1", port=port, threads=threads)


if __name__ == "__main__":
    main()
