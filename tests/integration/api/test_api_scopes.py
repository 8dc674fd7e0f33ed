"""API key scopes: what a key may do, refused with 403 missing_scope naming the scope."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from jobs.models import Job, JobStatus
from tenants.models import DEFAULT_SCOPES, ApiKey, ApiScope
from tenants.services import api_key_authenticate
from tests.factories import JobFactory
from tests.integration.api.conftest import Tenant, key_client, make_tenant
from tests.integration.api.openapi import api_operations

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

#: Operations that need more than jobs:read / jobs:write, by operation path suffix.
SPECIAL_SCOPES = {
    "/replay/": "dead_letters:write",
    "/purge/": "dead_letters:write",
    "/workers/": "ops",
}


def _needed(method: str, path: str) -> str:
    for suffix, scope in SPECIAL_SCOPES.items():
        if path.endswith(suffix):
            return scope
    return "jobs:read" if method == "get" else "jobs:write"


def _sweep(client: Any, tenant: Tenant) -> dict[str, Any]:
    """Every operation of the schema (ids of a real job and group): path → status."""
    job = JobFactory.create(organization=tenant.organization)
    answers = {}
    for operation in api_operations():
        url = operation.url({"job_id": str(job.pk), "task_id": str(job.pk), "group_id": "0" * 16})
        answer = operation.call(client, url)
        answers[f"{operation.method} {operation.path}"] = answer
    return answers


def test_a_read_only_key_reads_and_is_refused_every_write_naming_the_scope(broker: Any) -> None:
    tenant = make_tenant("school")
    reader, _ = key_client(tenant, ApiScope.JOBS_READ)

    for where, answer in _sweep(reader, tenant).items():
        method, path = where.split(" ", 1)
        needed = _needed(method, path)
        if needed == "jobs:read":
            assert answer.status_code != 403, where
            continue
        assert answer.status_code == 403, (where, answer.content)
        error = answer.json()["error"]
        assert (error["code"], error["required_scope"]) == ("missing_scope", needed), where
        assert needed in error["message"], where
    assert Job.objects.count() == 1  # nothing was submitted


def test_a_key_without_scopes_can_do_nothing(broker: Any) -> None:
    tenant = make_tenant("school")
    nothing, _ = key_client(tenant)

    for where, answer in _sweep(nothing, tenant).items():
        if where.endswith("/schema/"):
            continue  # the schema is public
        assert answer.status_code == 403, (where, answer.content)
        assert answer.json()["error"]["code"] == "missing_scope", where


def test_todays_keys_keep_their_abilities_and_gain_no_new_ones(broker: Any) -> None:
    tenant = make_tenant("school")  # a key created without naming scopes
    assert tenant.api_key.scopes == list(DEFAULT_SCOPES)

    for where, answer in _sweep(tenant.client, tenant).items():
        method, path = where.split(" ", 1)
        if _needed(method, path) in DEFAULT_SCOPES:
            assert answer.status_code != 403, (where, answer.content)
        else:
            assert answer.status_code == 403, where
            assert answer.json()["error"]["required_scope"] == _needed(method, path)


def test_a_dead_letters_key_replays_but_cannot_submit(broker: Any) -> None:
    tenant = make_tenant("school")
    replayer, _ = key_client(tenant, ApiScope.JOBS_READ, ApiScope.DEAD_LETTERS_WRITE)

    refused = replayer.post("/api/v1/jobs/", {"type": "diagnostics.echo"}, format="json")
    allowed = replayer.post(f"/api/v1/dead-letters/{'0' * 16}/replay/", format="json")

    assert refused.json()["error"]["required_scope"] == "jobs:write"
    assert allowed.status_code == 404  # past the permission: the group is unknown


def test_createapikey_sets_scopes_or_a_read_only_key_and_refuses_unknown_ones() -> None:
    call_command("createorganization", "keys", "--owner", "ops", stdout=StringIO())

    def create(*args: str) -> ApiKey:
        out = StringIO()
        call_command("createapikey", "ops", "--organization", "keys", *args, stdout=out)
        api_key = api_key_authenticate(raw=out.getvalue().strip().splitlines()[-1])
        assert api_key is not None
        return api_key

    assert create().scopes == ["jobs:read", "jobs:write"]
    assert create("--read-only").scopes == ["jobs:read"]
    assert create("--scope", "ops", "--scope", "dead_letters:write").scopes == [
        "dead_letters:write",
        "ops",
    ]
    with pytest.raises(CommandError, match=r"Unknown API key scope.*'jobs:admin'.*jobs:read"):
        call_command(
            "createapikey",
            "ops",
            "--organization",
            "keys",
            "--scope",
            "jobs:admin",
            stdout=StringIO(),
        )


@pytest.mark.django_db(transaction=True)
def test_the_admin_sets_a_keys_scopes_and_the_key_changes_at_once(broker: Any) -> None:
    tenant = make_tenant("school")
    job = JobFactory.create(organization=tenant.organization, status=JobStatus.FAILED)
    assert tenant.client.get(f"/api/v1/jobs/{job.pk}/").status_code == 200  # key now cached
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    url = f"/admin/tenants/apikey/{tenant.api_key.pk}/change/"
    assert 'value="dead_letters:write"' in admin.get(url).content.decode()

    saved = admin.post(url, {"name": "tests", "scopes": ["jobs:read"]})

    assert saved.status_code == 302, saved.content.decode()[-3000:]
    assert ApiKey.objects.get(pk=tenant.api_key.pk).scopes == ["jobs:read"]
    refused = tenant.client.post(f"/api/v1/jobs/{job.pk}/retry/")
    assert refused.json()["error"]["required_scope"] == "jobs:write"


@pytest.mark.django_db(transaction=True)
def test_the_scopes_migration_gives_existing_keys_todays_abilities() -> None:
    executor = MigrationExecutor(connection)
    before = [("tenants", "0003_organization_usage")]
    after = executor.loader.graph.leaf_nodes("tenants")
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    org = old.get_model("tenants", "Organization").objects.create(slug="old", name="Old")
    user = old.get_model("auth", "User").objects.create(username="old-member")
    membership = old.get_model("tenants", "Membership").objects.create(
        user=user, organization=org, role="member"
    )
    old.get_model("tenants", "ApiKey").objects.create(
        membership=membership, name="old", prefix="0ld0ld00", key_hash="0" * 64
    )

    executor = MigrationExecutor(connection)
    executor.migrate(after)

    assert ApiKey.objects.get(prefix="0ld0ld00").scopes == ["jobs:read", "jobs:write"]
