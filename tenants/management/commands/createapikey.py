"""``manage.py createapikey <username> --organization <slug> [--name NAME] [--scope SCOPE ...]``."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tenants.errors import TenantsError
from tenants.models import DEFAULT_SCOPES, READ_ONLY_SCOPES, ApiScope
from tenants.services import api_key_create, membership_get, organization_get


class Command(BaseCommand):
    help = (
        "Create an API key for a member of an organization; prints the key alone on the last line."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username", help="an existing user who belongs to the organization")
        parser.add_argument("--organization", required=True, help="the organization's slug")
        parser.add_argument("--name", default="default", help="a label for the key")
        scopes = parser.add_mutually_exclusive_group()
        scopes.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            metavar="SCOPE",
            help=f"a scope of the key, repeatable: {', '.join(ApiScope.values)} "
            f"(default: {' '.join(DEFAULT_SCOPES)})",
        )
        scopes.add_argument(
            "--read-only",
            action="store_true",
            help=f"a key that can only read ({' '.join(READ_ONLY_SCOPES)})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        scopes = READ_ONLY_SCOPES if options["read_only"] else options["scopes"]
        try:
            org = organization_get(slug=options["organization"])
            membership = membership_get(username=options["username"], organization=org)
            issued = api_key_create(membership=membership, name=options["name"], scopes=scopes)
        except TenantsError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Created API key {issued.api_key.name!r} (prefix tbx_{issued.api_key.prefix}, "
            f"scopes {' '.join(issued.api_key.scopes) or 'none'}) for "
            f"{options['username']} in {org.slug}. It is shown once; store it now:"
        )
        self.stdout.write(issued.raw)
