"""Organizations, memberships and API keys, through the services and the commands."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from jobs.broker import setup
from tenants import key_cache
from tenants.models import ApiKey, Membership, Organization, Role
from tenants.services import (
    api_key_authenticate,
    api_key_cache_forget,
    api_key_create,
    api_key_revoke,
)
from tests.e2e.conftest import free_port
from tests.factories import OrganizationFactory

pytestmark = [pytest.mark.django_db]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_key_cache() -> Iterator[None]:
    api_key_cache_forget()
    yield
    api_key_cache_forget()


def _member(org: Organization, username: str = "alice") -> Membership:
    user = User.objects.create_user(username=username)
    return Membership.objects.create(user=user, organization=org, role=Role.MEMBER)


def test_the_database_never_holds_a_usable_key() -> None:
    issued = api_key_create(membership=_member(OrganizationFactory.create()), name="ci")

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM tenants_apikey")
        row = cursor.fetchone()
    assert row is not None
    assert not any(isinstance(v, str) and issued.raw in v for v in row)
    assert not any(isinstance(v, str) and issued.raw.split("_", 2)[2] in v for v in row)
    assert issued.raw.startswith(f"tbx_{issued.api_key.prefix}_")
    assert api_key_authenticate(raw=issued.raw) == issued.api_key


def test_a_wrong_or_malformed_key_does_not_authenticate() -> None:
    issued = api_key_create(membership=_member(OrganizationFactory.create()))
    tampered = issued.raw[:-2] + ("aa" if not issued.raw.endswith("aa") else "bb")
    for raw in [tampered, "tbx_nothing_here", "not-a-key", "", f"tbx_{issued.api_key.prefix}_x"]:
        assert api_key_authenticate(raw=raw) is None


def test_a_revoked_key_no_longer_authenticates() -> None:
    issued = api_key_create(membership=_member(OrganizationFactory.create()))
    api_key_revoke(api_key=issued.api_key)
    assert api_key_authenticate(raw=issued.raw) is None


def test_using_a_key_updates_its_last_used_time() -> None:
    issued = api_key_create(membership=_member(OrganizationFactory.create()))
    assert issued.api_key.last_used_at is None

    api_key_authenticate(raw=issued.raw)
    first = ApiKey.objects.get(pk=issued.api_key.pk).last_used_at
    assert first is not None

    ApiKey.objects.filter(pk=issued.api_key.pk).update(last_used_at=first - timedelta(hours=1))
    api_key_cache_forget()  # an hour later, the process's cached copy would have expired
    api_key_authenticate(raw=issued.raw)
    assert ApiKey.objects.get(pk=issued.api_key.pk).last_used_at == pytest.approx(
        first, abs=timedelta(seconds=5)
    )


def test_a_key_just_used_authenticates_again_without_a_query(
    django_assert_num_queries: Any,
) -> None:
    issued = api_key_create(membership=_member(OrganizationFactory.create()))
    first = api_key_authenticate(raw=issued.raw)
    assert first is not None

    with django_assert_num_queries(0):
        again = api_key_authenticate(raw=issued.raw)

    assert again == issued.api_key
    assert (
        again is not None
        and again.membership.organization == issued.api_key.membership.organization
    )


def test_a_key_revoked_through_the_service_is_refused_at_once_even_when_cached() -> None:
    issued = api_key_create(membership=_member(OrganizationFactory.create()))
    assert api_key_authenticate(raw=issued.raw) is not None

    api_key_revoke(api_key=issued.api_key)

    assert api_key_authenticate(raw=issued.raw) is None


def test_a_key_revoked_elsewhere_is_refused_once_the_cache_time_has_passed(
    settings: Any,
) -> None:
    settings.API_KEY_CACHE_SECONDS = 0.3
    issued = api_key_create(membership=_member(OrganizationFactory.create()))
    assert api_key_authenticate(raw=issued.raw) is not None
    # Another process (the admin, another web worker) revokes it: this one's cache
    # is not told, and trusts the key for at most API_KEY_CACHE_SECONDS.
    ApiKey.objects.filter(pk=issued.api_key.pk).update(revoked_at=timezone.now())

    deadline = time.monotonic() + 5
    while api_key_authenticate(raw=issued.raw) is not None:
        assert time.monotonic() < deadline, "the revoked key was still trusted after 5 s"
        time.sleep(0.05)


def test_while_this_process_cannot_hear_revocations_it_reads_every_key_from_the_database(
    django_assert_num_queries: Any,
) -> None:
    issued = api_key_create(membership=_member(OrganizationFactory.create()))
    # Redis (the invalidation channel) unreachable: another process's revocation
    # would go unheard, so no cached key may be trusted.
    try:
        with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
            setup()
            assert api_key_authenticate(raw=issued.raw) is not None
            with django_assert_num_queries(1):
                assert api_key_authenticate(raw=issued.raw) is not None
    finally:
        setup()
    assert api_key_authenticate(raw=issued.raw) is not None
    with django_assert_num_queries(0):
        assert api_key_authenticate(raw=issued.raw) is not None


def test_a_key_read_before_a_forget_is_not_stored_after_it() -> None:
    issued = api_key_create(membership=_member(OrganizationFactory.create()))
    since = key_cache.generation()
    key_cache.forget()  # a revocation heard while the lookup was reading the old row

    key_cache.put("digest", issued.api_key, ttl_seconds=60, since_generation=since)

    assert key_cache.get("digest") is None


def test_revokeapikey_revokes_a_key_by_its_prefix() -> None:
    issued = api_key_create(membership=_member(OrganizationFactory.create()), name="ci")
    assert api_key_authenticate(raw=issued.raw) is not None
    out = StringIO()

    call_command("revokeapikey", f"tbx_{issued.api_key.prefix}", stdout=out)

    assert f"Revoked API key 'ci' (tbx_{issued.api_key.prefix})" in out.getvalue()
    assert api_key_authenticate(raw=issued.raw) is None
    with pytest.raises(CommandError, match="No API key with prefix 'nothere'"):
        call_command("revokeapikey", "nothere", stdout=StringIO())


def test_without_a_cache_every_authentication_reads_the_key(
    settings: Any, django_assert_num_queries: Any
) -> None:
    settings.API_KEY_CACHE_SECONDS = 0
    issued = api_key_create(membership=_member(OrganizationFactory.create()))
    assert api_key_authenticate(raw=issued.raw) is not None

    with django_assert_num_queries(1):
        assert api_key_authenticate(raw=issued.raw) is not None


def test_an_unknown_key_is_never_cached(django_assert_num_queries: Any) -> None:
    issued = api_key_create(membership=_member(OrganizationFactory.create()))
    wrong = issued.raw[:-1] + ("a" if not issued.raw.endswith("a") else "b")
    assert api_key_authenticate(raw=wrong) is None

    with django_assert_num_queries(1):
        assert api_key_authenticate(raw=wrong) is None


def test_createorganization_creates_the_owner_when_missing() -> None:
    out = StringIO()
    call_command(
        "createorganization",
        "springfield",
        "--name",
        "Springfield Elementary",
        "--owner",
        "skinner",
        "--email",
        "skinner@example.com",
        stdout=out,
    )

    org = Organization.objects.get(slug="springfield")
    assert org.name == "Springfield Elementary"
    membership = Membership.objects.get(organization=org)
    assert membership.user.username == "skinner" and membership.role == Role.OWNER
    assert "Created organization springfield" in out.getvalue()


def test_createorganization_refuses_a_taken_or_invalid_slug() -> None:
    call_command("createorganization", "taken", stdout=StringIO())
    with pytest.raises(CommandError, match="already exists"):
        call_command("createorganization", "taken", stdout=StringIO())
    with pytest.raises(CommandError, match="not a valid slug"):
        call_command("createorganization", "Not Valid!", stdout=StringIO())


def test_createapikey_prints_the_key_alone_on_the_last_line() -> None:
    call_command("createorganization", "keys", "--owner", "ops", stdout=StringIO())
    out = StringIO()
    call_command("createapikey", "ops", "--organization", "keys", "--name", "deploy", stdout=out)

    last_line = out.getvalue().strip().splitlines()[-1]
    api_key = api_key_authenticate(raw=last_line)
    assert api_key is not None
    assert api_key.name == "deploy"
    assert api_key.membership.organization.slug == "keys"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ghost", "--organization", "known"], "No user 'ghost'"),
        (["outsider", "--organization", "known"], "not a member of 'known'"),
        (["owner", "--organization", "unknown"], "No organization with slug 'unknown'"),
    ],
)
def test_createapikey_explains_an_unknown_user_or_organization(
    args: list[str], message: str
) -> None:
    call_command("createorganization", "known", "--owner", "owner", stdout=StringIO())
    User.objects.create_user(username="outsider")
    with pytest.raises(CommandError, match=message):
        call_command("createapikey", *args, stdout=StringIO())


@pytest.mark.django_db(transaction=True)
def test_the_commands_exit_non_zero_with_a_clear_message() -> None:
    from tests.e2e.conftest import subprocess_env

    result = subprocess.run(
        [sys.executable, "manage.py", "createapikey", "nobody", "--organization", "nowhere"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "No organization with slug 'nowhere'" in result.stderr
    assert "Traceback" not in result.stderr
