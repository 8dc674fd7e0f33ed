"""Fixtures of the API tests: organizations with members and API keys, and clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from tenants.models import ApiKey, Organization, Role
from tenants.services import api_key_create, membership_ensure
from tests.factories import OrganizationFactory


@dataclass
class Tenant:
    """An organization, one member, that member's API key and a client using it."""

    organization: Organization
    api_key: ApiKey
    raw_key: str
    client: APIClient


def key_client(tenant: Tenant, *scopes: str, name: str = "scoped") -> tuple[APIClient, str]:
    """A client with a new key of ``tenant``'s member holding exactly ``scopes``; and the key."""
    issued = api_key_create(membership=tenant.api_key.membership, name=name, scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw}")
    return client, issued.raw


def make_tenant(slug: str, **org_fields: Any) -> Tenant:
    org: Organization = OrganizationFactory.create(slug=slug, **org_fields)
    user, _ = get_user_model().objects.get_or_create(username=f"{slug}-member")
    membership = membership_ensure(user=user, organization=org, role=Role.MEMBER)
    issued = api_key_create(membership=membership, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw}")
    return Tenant(organization=org, api_key=issued.api_key, raw_key=issued.raw, client=client)


@pytest.fixture
def tenant_a(db: Any) -> Tenant:
    return make_tenant("school-a")


@pytest.fixture
def tenant_b(db: Any) -> Tenant:
    return make_tenant("school-b")


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()
