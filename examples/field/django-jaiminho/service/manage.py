#!/usr/bin/env python
"""Django's command-line utility for the orders service (as `startproject`
writes it): `manage.py migrate`, `manage.py events_relay`, ... Starting the
service is `serve.py` (migrations, the relay and the HTTP server at once)."""
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
