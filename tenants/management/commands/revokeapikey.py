"""``manage.py revokeapikey <prefix>``: every web process refuses the key once this returns."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tenants.errors import TenantsError
from tenants.services import api_key_get, api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key by its prefix (tbx_<prefix>, as the admin lists it)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("prefix", help="the key's prefix: tbx_<prefix> or <prefix>")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            api_key = api_key_get(prefix=options["prefix"])
        except TenantsError as exc:
            raise CommandError(str(exc)) from None
        if api_key.revoked_at is not None:
            self.stdout.write(f"API key tbx_{api_key.prefix} was already revoked.")
            return
        api_key_revoke(api_key=api_key)
        self.stdout.write(
            f"Revoked API key {api_key.name!r} (tbx_{api_key.prefix}) of "
            f"{api_key.membership.organization.slug}."
        )
