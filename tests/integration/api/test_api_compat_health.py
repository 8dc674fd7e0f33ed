"""The Celery-document compatibility endpoints, health checks, the schema and the docs."""

from __future__ import annotations

from typing import Any

import pytest
from dramatiq.brokers.redis import RedisBroker
from rest_framework.test import APIClient

from jobs.api.compat import CELERY_TASK_TYPES
from jobs.models import Job, JobStatus
from tests.integration.api.conftest import Tenant

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_tasks_submit_accepts_a_job_type_name_and_answers_submitted(
    broker: RedisBroker, tenant_a: Tenant
) -> None:
    response = tenant_a.client.post(
        "/api/v1/tasks/submit",
        {"task_type": "diagnostics.echo", "task_data": {"message": "celery"}, "priority": 8},
        format="json",
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "submitted"
    job = Job.objects.get(pk=body["task_id"])
    assert (job.job_type, job.priority, job.organization) == (
        "diagnostics.echo",
        8,
        tenant_a.organization,
    )
    assert job.payload["message"] == "celery"


def test_tasks_submit_maps_the_celery_task_names_onto_job_types() -> None:
    assert CELERY_TASK_TYPES == {
        "content_generation": "content.generate_lesson",
        "send_email": "email.send_transactional",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"task_type": "nope", "task_data": {}}, "task_type"),
        ({"task_type": "tests.count", "task_data": {"key": "x"}}, "task_type"),
        ({"task_type": "diagnostics.echo", "task_data": {}}, "task_data.message"),
        (
            {"task_type": "diagnostics.echo", "task_data": {"message": "x"}, "priority": 42},
            "priority",
        ),
    ],
)
def test_tasks_submit_refuses_bad_input_naming_the_field(
    broker: RedisBroker, tenant_a: Tenant, body: dict[str, object], field: str
) -> None:
    response = tenant_a.client.post("/api/v1/tasks/submit", body, format="json")

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    ("status", "celery", "info"),
    [
        (JobStatus.QUEUED, "PENDING", None),
        (JobStatus.RUNNING, "STARTED", {"progress": 40, "message": "halfway"}),
        (JobStatus.RETRYING, "RETRY", {"type": "EchoFailure", "message": "boom"}),
        (JobStatus.SUCCEEDED, "SUCCESS", {"message": "done"}),
        (JobStatus.FAILED, "FAILURE", {"type": "EchoFailure", "message": "boom"}),
        (JobStatus.CANCELLED, "REVOKED", None),
    ],
)
def test_tasks_status_speaks_celery_states(
    broker: RedisBroker, tenant_a: Tenant, status: str, celery: str, info: object
) -> None:
    task_id = tenant_a.client.post(
        "/api/v1/tasks/submit",
        {"task_type": "diagnostics.echo", "task_data": {"message": "x"}},
        format="json",
    ).json()["task_id"]
    Job.objects.filter(pk=task_id).update(
        status=status,
        progress=40,
        progress_message="halfway",
        result={"message": "done"} if status == JobStatus.SUCCEEDED else None,
        error_type="EchoFailure" if status in (JobStatus.FAILED, JobStatus.RETRYING) else "",
        error_message="boom" if status in (JobStatus.FAILED, JobStatus.RETRYING) else "",
    )

    body = tenant_a.client.get(f"/api/v1/tasks/status/{task_id}").json()

    assert body == {
        "task_id": task_id,
        "status": celery,
        "result": {"message": "done"} if celery == "SUCCESS" else None,
        "info": info,
    }


def test_the_compatibility_endpoints_answer_with_a_trailing_slash_too(
    broker: RedisBroker, tenant_a: Tenant
) -> None:
    submitted = tenant_a.client.post(
        "/api/v1/tasks/submit/",
        {"task_type": "diagnostics.echo", "task_data": {"message": "slash"}},
        format="json",
    )
    assert submitted.status_code == 200, submitted.content
    task_id = submitted.json()["task_id"]
    assert Job.objects.get(pk=task_id).payload["message"] == "slash"

    with_slash = tenant_a.client.get(f"/api/v1/tasks/status/{task_id}/")
    without = tenant_a.client.get(f"/api/v1/tasks/status/{task_id}")
    assert with_slash.status_code == 200
    assert with_slash.json() == without.json()
    assert with_slash.json()["status"] == "PENDING"
    refused = tenant_a.client.post("/api/v1/tasks/submit/", {"task_type": "nope"}, format="json")
    assert refused.status_code == 400
    assert "task_type" in refused.json()["error"]["fields"]
    assert tenant_a.client.get("/api/v1/tasks/status/nope/").status_code == 404


def test_retry_info_is_the_error_of_the_attempt_that_failed_on_a_real_worker(
    worker: Any, tenant_a: Tenant, wait_for: Any
) -> None:
    task_id = tenant_a.client.post(
        "/api/v1/tasks/submit",
        {"task_type": "diagnostics.echo", "task_data": {"message": "x", "fail_times": 1}},
        format="json",
    ).json()["task_id"]

    def status() -> dict[str, Any]:
        return dict(tenant_a.client.get(f"/api/v1/tasks/status/{task_id}").json())

    retrying = wait_for(lambda: (body := status())["status"] == "RETRY" and body)
    assert retrying["info"] == {
        "type": "EchoFailure",
        "message": "Failing attempt 1 of 1 on purpose (fail_times).",
    }
    assert retrying["result"] is None
    done = wait_for(lambda: (body := status())["status"] == "SUCCESS" and body)
    assert done["info"] == done["result"] == {"message": "x"}


def test_the_api_root_links_to_the_docs_the_schema_and_each_collection(
    anonymous: APIClient, tenant_a: Tenant
) -> None:
    as_json = anonymous.get("/api/v1/", HTTP_ACCEPT="application/json")
    as_page = anonymous.get("/api/v1/", HTTP_ACCEPT="text/html")
    with_key = tenant_a.client.get("/api/v1/", HTTP_ACCEPT="application/json")
    revoked = anonymous.get("/api/v1/", HTTP_AUTHORIZATION="Bearer tbx_not-a-key")

    assert as_json.status_code == 200
    assert as_json.json() == {
        "docs": "http://testserver/api/v1/docs/",
        "schema": "http://testserver/api/v1/schema/",
        "job-types": "http://testserver/api/v1/job-types/",
        "jobs": "http://testserver/api/v1/jobs/",
        "jobs-batch": "http://testserver/api/v1/jobs/batch/",
        "dead-letters": "http://testserver/api/v1/dead-letters/",
        "queues": "http://testserver/api/v1/queues/",
        "workers": "http://testserver/api/v1/workers/",
        "tasks-submit": "http://testserver/api/v1/tasks/submit",
    }
    assert with_key.json() == as_json.json()
    assert as_page.status_code == 200
    assert as_page["Content-Type"].startswith("text/html")
    assert 'href="http://testserver/api/v1/jobs/"' in as_page.content.decode()
    assert revoked.status_code == 401
    assert revoked["WWW-Authenticate"] == 'Bearer realm="api"'


def test_healthz_and_readyz_answer_200_when_postgres_and_redis_are_up(
    broker: RedisBroker, anonymous: APIClient
) -> None:
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    ready = anonymous.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}


def test_the_openapi_schema_and_docs_are_served_with_local_assets(anonymous: APIClient) -> None:
    schema = anonymous.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    docs = anonymous.get("/api/v1/docs/")

    assert schema.status_code == 200
    document = schema.json()
    assert document["openapi"].startswith("3.")
    assert "/api/v1/jobs/{job_id}/events/" in document["paths"]
    assert "Error" in document["components"]["schemas"]
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "//cdn" not in html.lower()
