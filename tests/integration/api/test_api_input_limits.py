"""The API's limits on input, each with the error that names it: payload depth, lone
surrogates, crafted cursors, body size, booleans for numbers, and unknown job types."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.test import override_settings

from jobs.models import Job
from jobs.registry import all_job_types
from tests.integration.api.conftest import Tenant
from tests.integration.api.test_api_hostile_input import assert_api_error

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

MIB = 1024 * 1024


def _nested(levels: int) -> Any:
    """A payload ``levels`` deep: the payload object is level 1, each list inside one more."""
    value: Any = []
    for _ in range(levels - 2):
        value = [value]
    return {"message": "m", "x": value} if levels > 1 else {"message": "m"}


def _post_json(tenant: Tenant, path: str, text: str, **extra: Any) -> Any:
    return tenant.client.post(path, data=text, content_type="application/json", **extra)


# --- Depth ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field", "index"),
    [
        ("/api/v1/jobs/", {"type": "diagnostics.echo", "payload": "DEEP"}, "payload", None),
        (
            "/api/v1/jobs/batch/",
            {"jobs": [{"type": "diagnostics.echo", "payload": "DEEP"}]},
            "jobs.0.payload",
            0,
        ),
        (
            "/api/v1/tasks/submit",
            {"task_type": "diagnostics.echo", "task_data": "DEEP"},
            "task_data",
            None,
        ),
    ],
)
def test_a_payload_500_levels_deep_is_refused_naming_the_limit_and_the_field(
    tenant_a: Tenant, path: str, body: dict[str, Any], field: str, index: int | None
) -> None:
    deep = '{"message":' + "[" * 500 + "]" * 500 + "}"
    text = json.dumps(body).replace('"DEEP"', deep)

    error = assert_api_error(_post_json(tenant_a, path, text), 400)

    assert error["code"] == "invalid_payload"
    assert list(error["fields"]) == [field]
    assert "JOBS_MAX_PAYLOAD_DEPTH=64" in error["fields"][field][0]
    assert "JOBS_MAX_PAYLOAD_DEPTH=64" in error["message"]
    assert error["index"] == index
    assert Job.objects.count() == 0


def test_a_payload_at_the_depth_limit_is_accepted_and_one_level_deeper_is_refused(
    tenant_a: Tenant,
) -> None:
    at_limit = tenant_a.client.post(
        "/api/v1/jobs/", {"type": "diagnostics.echo", "payload": _nested(64)}, format="json"
    )
    deeper = tenant_a.client.post(
        "/api/v1/jobs/", {"type": "diagnostics.echo", "payload": _nested(65)}, format="json"
    )

    # At the limit the payload reaches its serializer, which names the unknown key.
    assert assert_api_error(at_limit, 400)["fields"] == {
        "payload.x": ["Unknown field; this job type does not take it."]
    }
    assert "JOBS_MAX_PAYLOAD_DEPTH=64" in assert_api_error(deeper, 400)["fields"]["payload"][0]


@override_settings(JOBS_MAX_PAYLOAD_DEPTH=2)
def test_the_depth_limit_is_read_from_the_setting(tenant_a: Tenant) -> None:
    flat = tenant_a.client.post(
        "/api/v1/jobs/", {"type": "diagnostics.echo", "payload": {"message": "m"}}, format="json"
    )
    nested = tenant_a.client.post(
        "/api/v1/jobs/",
        {"type": "diagnostics.echo", "payload": {"message": "m", "x": [[]]}},
        format="json",
    )

    assert flat.status_code == 201, flat.content
    assert "JOBS_MAX_PAYLOAD_DEPTH=2" in assert_api_error(nested, 400)["fields"]["payload"][0]


# --- Lone surrogates ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "text", "field"),
    [
        ("/api/v1/jobs/", '{"type":"\\ud800","payload":{}}', "type"),
        (
            "/api/v1/jobs/",
            '{"type":"diagnostics.echo","payload":{"message":"m","\\udfff":1}}',
            "payload",
        ),
        (
            "/api/v1/jobs/",
            '{"type":"diagnostics.echo","payload":{"message":"a\\ud800"}}',
            "payload.message",
        ),
        (
            "/api/v1/jobs/batch/",
            '{"jobs":[{"type":"diagnostics.echo","payload":{"x":[["\\udc00"]]}}]}',
            "jobs.0.payload.x.0.0",
        ),
        (
            "/api/v1/tasks/submit",
            '{"task_type":"diagnostics.echo","task_data":{"message":"m","\\udfff":1}}',
            "task_data",
        ),
        (
            "/api/v1/tasks/submit",
            '{"task_type":"diagnostics.echo","task_data":{"message":"\\ud800"}}',
            "task_data.message",
        ),
    ],
)
def test_a_lone_surrogate_is_refused_naming_the_field(
    tenant_a: Tenant, path: str, text: str, field: str
) -> None:
    error = assert_api_error(_post_json(tenant_a, path, text), 400)

    assert field in error["fields"], error
    assert Job.objects.count() == 0


def test_an_error_that_echoes_a_lone_surrogate_renders_as_json_and_as_the_browsable_api(
    tenant_a: Tenant,
) -> None:
    text = '{"type":"\\ud800","payload":{}}'

    as_json = _post_json(tenant_a, "/api/v1/jobs/", text)
    as_html = _post_json(tenant_a, "/api/v1/jobs/", text, HTTP_ACCEPT="text/html")

    assert "\ud800" in assert_api_error(as_json, 400)["fields"]["type"][0]
    assert b"\\ud800" in as_json.content  # escaped: UTF-8 cannot encode it
    assert as_html.status_code == 400
    assert as_html["Content-Type"].startswith("text/html")
    assert "\\ud800" in as_html.content.decode()


# --- Cursors ----------------------------------------------------------------------


@pytest.mark.parametrize("position", ["garbage", "%00", "' OR 1=1--", "2020-01-01"])
def test_a_crafted_cursor_gets_the_same_404_as_a_malformed_one(
    tenant_a: Tenant, position: str
) -> None:
    crafted = base64.b64encode(f"p={position}".encode()).decode()

    malformed = tenant_a.client.get("/api/v1/jobs/?cursor=garbage")
    response = tenant_a.client.get(f"/api/v1/jobs/?cursor={crafted}")

    assert assert_api_error(response, 404) == assert_api_error(malformed, 404)
    assert response.json()["error"]["message"] == "Invalid cursor"


def test_the_cursors_the_api_makes_still_page_through_the_jobs(tenant_a: Tenant) -> None:
    created = [
        tenant_a.client.post(
            "/api/v1/jobs/",
            {"type": "diagnostics.echo", "payload": {"message": str(n)}},
            format="json",
        ).json()["id"]
        for n in range(3)
    ]

    first = tenant_a.client.get("/api/v1/jobs/?page_size=2").json()
    second = tenant_a.client.get(first["next"]).json()
    back = tenant_a.client.get(second["previous"]).json()

    assert [j["id"] for j in first["results"] + second["results"]] == created[::-1]
    assert [j["id"] for j in back["results"]] == [j["id"] for j in first["results"]]


# --- Body size --------------------------------------------------------------------


def test_a_body_over_djangos_default_limit_but_under_api_max_body_bytes_is_read(
    tenant_a: Tenant,
) -> None:
    email = {
        "type": "email.send_transactional",
        "payload": {"to_email": "a@example.com", "subject": "s", "html_content": "x" * 199_000},
    }
    body = json.dumps({"jobs": [email] * 16})
    # Over Django's default DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB), under API_MAX_BODY_BYTES (5 MiB).
    assert 5 * MIB > len(body) > 2.5 * MIB

    response = _post_json(tenant_a, "/api/v1/jobs/batch/", body)

    assert response.status_code == 201, response.content[:500]
    assert Job.objects.count() == 16


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
def test_a_body_over_djangos_own_limit_gets_the_json_413(tenant_a: Tenant) -> None:
    body = json.dumps({"type": "diagnostics.echo", "payload": {"message": "x" * 2048}})

    error = assert_api_error(_post_json(tenant_a, "/api/v1/jobs/", body), 413)

    assert error["code"] == "body_too_large"


# --- Booleans are not numbers -------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/jobs/", {"delay_seconds": True}, "delay_seconds"),
        ("/api/v1/jobs/", {"delay_seconds": False}, "delay_seconds"),
        ("/api/v1/jobs/", {"priority": True}, "priority"),
        (
            "/api/v1/jobs/",
            {"payload": {"message": "m", "sleep_seconds": True}},
            "payload.sleep_seconds",
        ),
        ("/api/v1/jobs/", {"payload": {"message": "m", "fail_times": True}}, "payload.fail_times"),
        ("/api/v1/jobs/batch/", {"delay_seconds": True}, "jobs.0.delay_seconds"),
        ("/api/v1/tasks/submit", {"priority": True}, "priority"),
    ],
)
def test_a_boolean_for_a_number_is_refused_naming_the_field(
    tenant_a: Tenant, path: str, body: dict[str, Any], field: str
) -> None:
    job = {"type": "diagnostics.echo", "payload": {"message": "m"}, **body}
    if path.endswith("/batch/"):
        request: dict[str, Any] = {"jobs": [job]}
    elif path.endswith("/submit"):
        request = {"task_type": job["type"], "task_data": job["payload"], **body}
    else:
        request = job

    error = assert_api_error(tenant_a.client.post(path, request, format="json"), 400)

    assert list(error["fields"]) == [field]
    assert Job.objects.count() == 0


# --- Unknown job types --------------------------------------------------------------


def _internal_type_names() -> list[str]:
    names = [jt.name for jt in all_job_types() if not jt.public]
    assert "django_tasks.run" in names and "cleanup.remove_old_jobs" in names
    return names


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/tasks/submit", {"task_type": "nope"}, "task_type"),
        ("/api/v1/tasks/submit", {"task_type": "django_tasks.run"}, "task_type"),
        ("/api/v1/jobs/", {"type": "nope"}, "type"),
        ("/api/v1/jobs/", {"type": "cleanup.remove_old_jobs"}, "type"),
    ],
)
def test_an_unknown_or_internal_job_type_is_refused_without_naming_internal_types(
    tenant_a: Tenant, path: str, body: dict[str, Any], field: str
) -> None:
    error = assert_api_error(tenant_a.client.post(path, body, format="json"), 400)

    text = error["message"] + " ".join(error["fields"][field])
    asked = next(iter(body.values()))
    leaked = [name for name in _internal_type_names() if name in text and name != asked]
    assert leaked == []
    assert "GET /api/v1/job-types/" in error["fields"][field][0]


def test_an_internal_job_type_gets_the_same_answer_as_an_unknown_one(tenant_a: Tenant) -> None:
    unknown = tenant_a.client.post("/api/v1/tasks/submit", {"task_type": "nope"}, format="json")
    internal = tenant_a.client.post(
        "/api/v1/tasks/submit", {"task_type": "django_tasks.run"}, format="json"
    )

    unknown_error = assert_api_error(unknown, 400)
    internal_error = assert_api_error(internal, 400)
    assert json.dumps(internal_error).replace("django_tasks.run", "nope") == json.dumps(
        unknown_error
    )
