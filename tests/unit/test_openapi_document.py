"""docs/api/openapi.yaml tells what the server does: valid OpenAPI 3, errors with their headers.

``make schema-check`` keeps the file equal to what the code generates; these tests
hold what it says. The live answers behind each claim are checked in
``tests/integration/api/test_api_errors.py`` and the schema fuzz test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from tenants.api.authentication import ApiKeyAuthentication

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "api" / "openapi.yaml"
METHODS = ("get", "put", "post", "patch", "delete")


def _document() -> dict[str, Any]:
    return dict(yaml.safe_load(SCHEMA_PATH.read_text()))


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    found = [
        (path, method, operation)
        for path, item in _document()["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]
    assert len(found) >= 10, found
    return found


def test_the_schema_is_valid_openapi_in_its_yaml_and_json_forms(tmp_path: Path) -> None:
    spec, _ = read_from_filename(str(SCHEMA_PATH))
    validate(spec)
    as_json = tmp_path / "openapi.json"
    as_json.write_text(json.dumps(_document()))
    spec, _ = read_from_filename(str(as_json))
    validate(spec)


def test_a_broken_schema_is_refused_by_the_validator() -> None:
    broken = _document()
    broken["paths"]["/api/v1/jobs/"]["get"]["responses"] = {"200": {"content": {}}}
    with pytest.raises(OpenAPIValidationError, match=r"\{\"content\":\{\}\} is not valid"):
        validate(broken)


def test_every_401_declares_the_www_authenticate_challenge_the_server_sends() -> None:
    challenge = ApiKeyAuthentication().authenticate_header(None)  # type: ignore[arg-type]
    assert challenge == 'Bearer realm="api"'
    for path, method, operation in _operations():
        unauthorized = operation["responses"]["401"]
        header = unauthorized["headers"]["WWW-Authenticate"]
        assert f"`{challenge}`" in header["description"], (path, method)


def test_every_operation_documents_405_with_its_allow_header() -> None:
    for path, method, operation in _operations():
        not_allowed = operation["responses"]["405"]
        assert "method_not_allowed" in not_allowed["description"], (path, method)
        assert "Allow" in not_allowed["headers"], (path, method)


def test_404_is_worded_for_each_kind_of_endpoint_and_absent_where_it_cannot_happen() -> None:
    wording: dict[tuple[str, str], str | None] = {
        (path, method): operation["responses"].get("404", {}).get("description")
        for path, method, operation in _operations()
    }

    assert "No job with this id" in str(wording[("/api/v1/jobs/{job_id}/", "get")])
    assert "No job with this id" in str(wording[("/api/v1/jobs/{job_id}/cancel/", "post")])
    assert "No task with this id" in str(wording[("/api/v1/tasks/status/{task_id}", "get")])
    assert "cursor" in str(wording[("/api/v1/jobs/", "get")])
    for where in (
        ("/api/v1/jobs/", "post"),
        ("/api/v1/jobs/batch/", "post"),
        ("/api/v1/job-types/", "get"),
        ("/api/v1/tasks/submit", "post"),
    ):
        assert wording[where] is None, where


def test_the_event_stream_documents_its_gone_event() -> None:
    operation = _document()["paths"]["/api/v1/jobs/{job_id}/events/"]["get"]
    event = operation["responses"]["200"]["content"]["text/event-stream"]["schema"]

    assert "gone" in event["properties"]["event"]["enum"]
    assert "gone" in event["properties"]["data"]["description"]
    assert "`gone`" in operation["description"]
