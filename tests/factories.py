from __future__ import annotations

import factory
from django.contrib.auth.models import Permission, User

from jobs.models import Job
from tenants.models import Membership, Organization


class OrganizationFactory(factory.django.DjangoModelFactory[Organization]):
    class Meta:
        model = Organization
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"org-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.replace("-", " ").title())


class JobFactory(factory.django.DjangoModelFactory[Job]):
    """A ledger row written directly (no message is sent): for admin and selector tests."""

    class Meta:
        model = Job

    organization = factory.SubFactory(OrganizationFactory)
    job_type = "diagnostics.echo"
    queue = "default"
    payload = factory.LazyFunction(lambda: {"message": "hi"})


def staff_user(username: str, *organizations: Organization, perms: tuple[str, ...] = ()) -> User:
    """A staff user who belongs to ``organizations`` and holds ``perms`` (``app.codename``)."""
    user = User.objects.create_user(username=username, password="pw", is_staff=True)
    for organization in organizations:
        Membership.objects.create(user=user, organization=organization)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user
