"""Hostile input on every write endpoint and on the list's query parameters: always a 4xx in
the API's one JSON error shape, never a 5xx, and nothing created.

The requests go through the whole Django stack (middleware included) with the
test client; what needs a real server (chunked bodies, big bodies through
gunicorn) is in tests/e2e/test_api_body_limits.py.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from jobs.models import Job
from tests.integration.api.conftest import Tenant

# Refusals need no commit: each test runs in a transaction that is rolled back.
pytestmark = [pytest.mark.integration, pytest.mark.django_db]

MIB = 1024 * 1024
DEEP = "[" * 500 + "]" * 500
DEEP_OBJECT = '{"a":' * 500 + "1" + "}" * 500
TOO_DEEP_TO_PARSE = "[" * 100_000 + "]" * 100_000
HUGE_INT = "9" * 5000
ECHO = '"type":"diagnostics.echo"'


def _job(payload: str, extra: str = "") -> str:
    return f'{{{ECHO},"payload":{payload}{extra}}}'


def _task(task_data: str, extra: str = "") -> str:
    return f'{{"task_type":"diagnostics.echo","task_data":{task_data}{extra}}}'


def _batch(*jobs: str) -> str:
    return '{"jobs":[' + ",".join(jobs) + "]}"


def _cursor(query: str) -> str:
    return base64.b64encode(query.encode()).decode()


def assert_api_error(response: Any, status: int | None = None) -> dict[str, Any]:
    """A 4xx (``status`` if given) whose body is the API's one error shape."""
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:500])
    if status is not None:
        assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"status", "code", "message", "fields", "index"}
    assert error["status"] == response.status_code
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], dict)
    return dict(error)


#: (id, path, raw JSON body, expected status)
WRITES: list[tuple[str, str, str, int]] = [
    # Depth
    ("jobs-deep-list", "/api/v1/jobs/", _job(f'{{"message":{DEEP}}}'), 400),
    ("jobs-deep-object", "/api/v1/jobs/", _job(DEEP_OBJECT), 400),
    ("jobs-deep-body", "/api/v1/jobs/", DEEP, 400),
    ("jobs-deep-type", "/api/v1/jobs/", f'{{"type":{DEEP}}}', 400),
    ("jobs-deep-key", "/api/v1/jobs/", _job("{}", f',"idempotency_key":{DEEP}'), 400),
    ("jobs-too-deep-to-parse", "/api/v1/jobs/", _job(TOO_DEEP_TO_PARSE), 400),
    ("batch-deep", "/api/v1/jobs/batch/", _batch(_job(f'{{"message":{DEEP}}}')), 400),
    ("batch-deep-jobs", "/api/v1/jobs/batch/", f'{{"jobs":{DEEP}}}', 400),
    ("tasks-deep", "/api/v1/tasks/submit", _task(f'{{"message":{DEEP}}}'), 400),
    ("tasks-deep-type", "/api/v1/tasks/submit", f'{{"task_type":{DEEP}}}', 400),
    # Lone surrogates, in keys and values
    ("jobs-surrogate-type", "/api/v1/jobs/", '{"type":"\\ud800","payload":{}}', 400),
    ("jobs-surrogate-key", "/api/v1/jobs/", _job('{"message":"m","\\udfff":1}'), 400),
    ("jobs-surrogate-value", "/api/v1/jobs/", _job('{"message":"\\ud800"}'), 400),
    ("jobs-surrogate-nested", "/api/v1/jobs/", _job('{"message":"m","x":[{"\\udc00":1}]}'), 400),
    ("jobs-surrogate-body-key", "/api/v1/jobs/", _job("{}", ',"\\ud800":1'), 400),
    (
        "jobs-surrogate-idem",
        "/api/v1/jobs/",
        _job('{"message":"m"}', ',"idempotency_key":"\\ud800"'),
        400,
    ),
    ("batch-surrogate-key", "/api/v1/jobs/batch/", _batch(_job('{"\\udfff":1}')), 400),
    ("tasks-surrogate-type", "/api/v1/tasks/submit", '{"task_type":"\\ud800"}', 400),
    ("tasks-surrogate-key", "/api/v1/tasks/submit", _task('{"message":"m","\\udfff":1}'), 400),
    ("tasks-surrogate-value", "/api/v1/tasks/submit", _task('{"message":"\\udbff"}'), 400),
    # NUL characters
    ("jobs-nul-type", "/api/v1/jobs/", '{"type":"diagnostics.echo\\u0000"}', 400),
    ("jobs-nul-key", "/api/v1/jobs/", _job('{"message":"m","a\\u0000":1}'), 400),
    ("jobs-nul-value", "/api/v1/jobs/", _job('{"message":"a\\u0000b"}'), 400),
    ("jobs-nul-nested", "/api/v1/jobs/", _job('{"message":"m","x":{"y":["\\u0000"]}}'), 400),
    (
        "batch-nul",
        "/api/v1/jobs/batch/",
        _batch(_job('{"message":"ok"}'), _job('{"message":"\\u0000"}')),
        400,
    ),
    ("tasks-nul-type", "/api/v1/tasks/submit", '{"task_type":"\\u0000"}', 400),
    ("tasks-nul-value", "/api/v1/tasks/submit", _task('{"message":"\\u0000"}'), 400),
    # Huge numbers
    ("jobs-float-overflow", "/api/v1/jobs/", _job('{"message":"m","sleep_seconds":1e400}'), 400),
    (
        "jobs-float-overflow-neg",
        "/api/v1/jobs/",
        _job('{"message":"m","sleep_seconds":-1e400}'),
        400,
    ),
    ("jobs-unknown-key-inf", "/api/v1/jobs/", _job('{"message":"m","x":1e400}'), 400),
    (
        "jobs-int-5000-digits",
        "/api/v1/jobs/",
        _job(f'{{"message":"m","fail_times":{HUGE_INT}}}'),
        400,
    ),
    ("jobs-priority-2-70", "/api/v1/jobs/", _job('{"message":"m"}', f',"priority":{2**70}'), 400),
    (
        "jobs-priority-5000-digits",
        "/api/v1/jobs/",
        _job('{"message":"m"}', f',"priority":{HUGE_INT}'),
        400,
    ),
    ("jobs-priority-1e400", "/api/v1/jobs/", _job('{"message":"m"}', ',"priority":1e400'), 400),
    ("jobs-delay-1e400", "/api/v1/jobs/", _job('{"message":"m"}', ',"delay_seconds":1e400'), 400),
    ("jobs-delay-2-70", "/api/v1/jobs/", _job('{"message":"m"}', f',"delay_seconds":{2**70}'), 400),
    ("jobs-nan", "/api/v1/jobs/", _job('{"message":"m","sleep_seconds":NaN}'), 400),
    ("batch-priority-2-70", "/api/v1/jobs/batch/", _batch(_job("{}", f',"priority":{2**70}')), 400),
    (
        "tasks-priority-2-70",
        "/api/v1/tasks/submit",
        _task('{"message":"m"}', f',"priority":{2**70}'),
        400,
    ),
    ("tasks-int-5000-digits", "/api/v1/tasks/submit", _task(f'{{"fail_times":{HUGE_INT}}}'), 400),
    # Booleans for numbers
    ("jobs-delay-true", "/api/v1/jobs/", _job('{"message":"m"}', ',"delay_seconds":true'), 400),
    ("jobs-priority-true", "/api/v1/jobs/", _job('{"message":"m"}', ',"priority":true'), 400),
    ("jobs-sleep-true", "/api/v1/jobs/", _job('{"message":"m","sleep_seconds":true}'), 400),
    ("jobs-fail-times-false", "/api/v1/jobs/", _job('{"message":"m","fail_times":false}'), 400),
    (
        "tasks-priority-true",
        "/api/v1/tasks/submit",
        _task('{"message":"m"}', ',"priority":true'),
        400,
    ),
    # Wrong shapes
    ("jobs-body-list", "/api/v1/jobs/", "[]", 400),
    ("jobs-body-string", "/api/v1/jobs/", '"x"', 400),
    ("jobs-body-null", "/api/v1/jobs/", "null", 400),
    ("jobs-payload-list", "/api/v1/jobs/", _job("[]"), 400),
    ("jobs-payload-null", "/api/v1/jobs/", _job("null"), 400),
    ("jobs-type-number", "/api/v1/jobs/", '{"type":5}', 400),
    ("jobs-internal-type", "/api/v1/jobs/", '{"type":"django_tasks.run","payload":{}}', 400),
    ("batch-empty", "/api/v1/jobs/batch/", '{"jobs":[]}', 400),
    ("batch-too-many", "/api/v1/jobs/batch/", _batch(*[_job('{"message":"m"}')] * 1001), 400),
    ("batch-not-a-list", "/api/v1/jobs/batch/", '{"jobs":{"a":1}}', 400),
    ("tasks-internal-type", "/api/v1/tasks/submit", '{"task_type":"django_tasks.run"}', 400),
    (
        "tasks-data-list",
        "/api/v1/tasks/submit",
        '{"task_type":"diagnostics.echo","task_data":[]}',
        400,
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "status"), [case[1:] for case in WRITES], ids=[case[0] for case in WRITES]
)
def test_hostile_bodies_on_the_submit_endpoints_get_a_json_4xx_and_create_nothing(
    tenant_a: Tenant, path: str, body: str, status: int
) -> None:
    response = tenant_a.client.post(path, data=body, content_type="application/json")

    assert_api_error(response, status)
    assert Job.objects.count() == 0


def _big_body(path: str, size: int) -> str:
    """A valid submission to ``path`` of ``size`` bytes: one job whose message fills it."""
    wrap = {
        "/api/v1/jobs/": _job,
        "/api/v1/jobs/batch/": lambda payload: _batch(_job(payload)),
        "/api/v1/tasks/submit": _task,
    }[path]
    filler = size - len(wrap('{"message":""}'))
    return wrap(f'{{"message":"{"x" * filler}"}}')


@pytest.mark.parametrize(
    ("path", "size", "status", "code"),
    [
        ("/api/v1/jobs/", 2 * MIB, 400, "payload_too_large"),
        ("/api/v1/jobs/", int(5.1 * MIB), 413, "body_too_large"),
        ("/api/v1/jobs/batch/", 2 * MIB, 400, "payload_too_large"),
        ("/api/v1/jobs/batch/", int(5.1 * MIB), 413, "body_too_large"),
        ("/api/v1/jobs/batch/", 10 * MIB, 413, "body_too_large"),
        ("/api/v1/tasks/submit", 2 * MIB, 400, "payload_too_large"),
        ("/api/v1/tasks/submit", 10 * MIB, 413, "body_too_large"),
    ],
)
def test_big_bodies_get_a_json_413_over_the_limit_and_a_json_400_under_it(
    tenant_a: Tenant, path: str, size: int, status: int, code: str
) -> None:
    body = _big_body(path, size)
    assert len(body) == size

    response = tenant_a.client.post(path, data=body, content_type="application/json")

    assert assert_api_error(response, status)["code"] == code
    assert Job.objects.count() == 0


HOSTILE_IDS = [
    "%00",
    "%27%20OR%201%3D1--",
    "%ED%A0%80",  # the UTF-8 bytes of a surrogate: not valid UTF-8
    "x" * 5000,
    "00000000-0000-0000-0000-000000000000",
    "-1",
    "1e400",
]


@pytest.mark.parametrize("action", ["cancel", "retry"])
@pytest.mark.parametrize("job_id", HOSTILE_IDS)
@pytest.mark.parametrize("body", ["", DEEP, '{"\\ud800":"\\u0000"}'], ids=["empty", "deep", "bad"])
def test_hostile_ids_and_bodies_on_cancel_and_retry_get_a_json_404(
    tenant_a: Tenant, action: str, job_id: str, body: str
) -> None:
    response = tenant_a.client.post(
        f"/api/v1/jobs/{job_id}/{action}/", data=body, content_type="application/json"
    )

    assert_api_error(response, 404)


@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_a_body_over_the_limit_on_cancel_and_retry_gets_413(tenant_a: Tenant, action: str) -> None:
    job_id = tenant_a.client.post(
        "/api/v1/jobs/", {"type": "diagnostics.echo", "payload": {"message": "m"}}, format="json"
    ).json()["id"]

    response = tenant_a.client.post(
        f"/api/v1/jobs/{job_id}/{action}/", data="x" * (10 * MIB), content_type="application/json"
    )

    assert assert_api_error(response, 413)["code"] == "body_too_large"
    assert Job.objects.get(pk=job_id).status == "queued"


LIST_QUERIES: list[tuple[str, str, int]] = [
    ("cursor-garbage-position", f"cursor={_cursor('p=garbage')}", 404),
    ("cursor-nul-position", f"cursor={_cursor('p=%00')}", 404),
    ("cursor-sql-position", f"cursor={_cursor("p=' OR 1=1--")}", 404),
    ("cursor-date-only", f"cursor={_cursor('p=2020-01-01')}", 404),
    ("cursor-naive-time", f"cursor={_cursor('p=2020-01-01 10:00:00')}", 404),
    ("cursor-month-13", f"cursor={_cursor('p=2020-13-01 00:00:00%2B00:00')}", 404),
    ("cursor-huge-offset", f"cursor={_cursor('o=' + HUGE_INT)}", 404),
    ("cursor-reverse-garbage", f"cursor={_cursor('r=x')}", 404),
    ("cursor-bad-padding", "cursor=YQ", 404),
    ("cursor-not-ascii", "cursor=%C3%A9", 404),
    ("cursor-surrogate-bytes", "cursor=%ED%A0%80", 404),
    ("created-after-overflow", "created_after=9999-12-31T23:59:59-05:00", 400),
    ("created-before-underflow", "created_before=0001-01-01T00:00:00%2B05:00", 400),
    ("created-after-garbage", "created_after=%27%20OR%201%3D1--", 400),
    ("created-after-nul", "created_after=%00", 400),
    ("status-nul", "status=%00", 400),
    ("type-nul", "type=%00", 400),
    ("type-too-long", "type=" + "x" * 5000, 400),
    ("queue-sql", "queue=%27%20OR%201%3D1--", 400),
]


@pytest.mark.parametrize(
    ("query", "status"), [case[1:] for case in LIST_QUERIES], ids=[case[0] for case in LIST_QUERIES]
)
def test_hostile_query_parameters_of_the_job_list_get_a_json_4xx(
    tenant_a: Tenant, query: str, status: int
) -> None:
    response = tenant_a.client.get(f"/api/v1/jobs/?{query}")

    assert_api_error(response, status)


@pytest.mark.parametrize("page_size", ["0", "-1", HUGE_INT, "1e400", "%00", "true"])
def test_a_hostile_page_size_falls_back_to_a_valid_one(tenant_a: Tenant, page_size: str) -> None:
    response = tenant_a.client.get(f"/api/v1/jobs/?page_size={page_size}")

    assert response.status_code == 200, response.content[:500]
    assert response.json()["results"] == []
