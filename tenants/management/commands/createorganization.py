"""``manage.py createorganization <slug> [--name NAME] [--owner USERNAME [--email EMAIL]]``."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tenants.errors import TenantsError
from tenants.services import organization_create


class Command(BaseCommand):
    help = "Create an organization, and optionally its owner (created if missing)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("slug", help="unique slug: lowercase letters, digits and hyphens")
        parser.add_argument("--name", default="", help="display name (default: from the slug)")
        parser.add_argument(
            "--owner", default=None, help="username of the owner; created if missing"
        )
        parser.add_argument("--email", default="", help="email of the owner, if it is created")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["email"] and not options["owner"]:
            raise CommandError("--email needs --owner USERNAME.")
        try:
            org = organization_create(
                slug=options["slug"],
                name=options["name"],
                owner_username=options["owner"],
                owner_email=options["email"],
            )
        except TenantsError as exc:
            raise CommandError(str(exc)) from None
        owner = f", owner {options['owner']}" if options["owner"] else ""
        self.stdout.write(f"Created organization {org.slug} ({org.name}){owner}.")
