"""OpenAPI helpers: JSON Schemas of job payloads, and the documented error responses."""

from __future__ import annotations

import copy
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ComponentRegistry
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.views import APIView

from jobs.payloads import PayloadSerializer

#: The path parameter of every operation on one job.
JOB_ID = OpenApiParameter(
    "job_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The job's id."
)
#: The query parameters of every cursor-paginated list of jobs (see ``JobPagination``).
PAGE_PARAMETERS = [
    OpenApiParameter(
        "cursor", OpenApiTypes.STR, description="The `next` or `previous` link's cursor."
    ),
    OpenApiParameter(
        "page_size",
        OpenApiTypes.INT,
        description="Jobs per page (default API_PAGE_SIZE, at most API_MAX_PAGE_SIZE).",
    ),
]


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Documents ``Authorization: Bearer <api key>`` as the API's security scheme."""

    target_class = "tenants.api.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key from `python manage.py createapikey` "
            "(`Token <key>` is accepted too).",
        }


#: Statuses every operation may answer, with why.
_COMMON_ERRORS = {
    "400": "Validation failed; `fields` names each offending field.",
    "401": "Missing, malformed, unknown or revoked API key (code `not_authenticated` or "
    "`authentication_failed`).",
    "403": "The organization is inactive (code `organization_inactive`), the session user may "
    "not act for it, or the API key lacks the operation's scope (code `missing_scope`, "
    "`required_scope` names it).",
    "405": "The path does not take this method (code `method_not_allowed`); `Allow` lists "
    "the methods it takes.",
    "406": "The Accept header asks for a format the endpoint cannot produce.",
    "503": "Postgres or Redis is unavailable; retry after `Retry-After` seconds.",
}
#: The 404 of each kind of operation that can answer one (the others cannot).
_NOT_FOUND_JOB = (
    "No job with this id in your organization (code `job_not_found`): the id is unknown, "
    "not a UUID, or another organization's job, which answers exactly like a missing one."
)
_NOT_FOUND_TASK = (
    "No task with this id in your organization (code `job_not_found`): the id is unknown, "
    "not a UUID, or another organization's task, which answers exactly like a missing one."
)
_NOT_FOUND_CURSOR = "A `cursor` the API did not make (code `not_found`)."
_NOT_FOUND_GROUP = (
    "No dead letters of this group in your organization (code `dead_letter_group_not_found`): "
    "the id is unknown, or only another organization has such dead letters, which answers "
    "exactly like an unknown id."
)
_BODY_ERRORS = {
    "411": "The body was sent without Content-Length (chunked); send it with its length.",
    "413": "The request body is larger than API_MAX_BODY_BYTES.",
    "415": "The body is not JSON (send Content-Type: application/json).",
}
_SUBMIT_ERRORS = {
    "429": "Rate limit or monthly quota reached (code `rate_limited` or `quota_exceeded`); "
    "retry after `Retry-After` seconds.",
}
_STREAM_ERRORS = {
    "429": "Too many event streams open for this API key, organization or web process "
    "(code `too_many_streams`); close one, or retry after `Retry-After` seconds.",
}
_TRANSITION_ERRORS = {"409": "The job's status does not allow this transition."}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "code", "message", "fields", "index"],
            "properties": {
                "status": {"type": "integer", "description": "The HTTP status."},
                "code": {
                    "type": "string",
                    "description": "Stable machine-readable code, e.g. `invalid`, "
                    "`not_authenticated`, `quota_exceeded`, `invalid_transition`.",
                },
                "message": {"type": "string", "description": "What went wrong and how to fix it."},
                "fields": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                    "description": "Dotted path of each offending field (`jobs.3.payload.message`) "
                    "→ messages. Empty when no field is at fault.",
                },
                "index": {
                    "type": "integer",
                    "nullable": True,
                    "description": "Position of the first invalid job of a batch, else null.",
                },
                "required_scope": {
                    "type": "string",
                    "description": "With code `missing_scope` only: the API key scope the "
                    "operation needs (`jobs:read`, `jobs:write`, `dead_letters:write`, `ops`).",
                },
            },
        }
    },
}

_RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer"},
        "description": "Seconds to wait before retrying.",
    }
}
_HEADERS: dict[str, dict[str, Any]] = {
    "401": {
        "WWW-Authenticate": {
            "schema": {"type": "string"},
            "description": 'The challenge: `Bearer realm="api"`.',
        }
    },
    "405": {
        "Allow": {
            "schema": {"type": "string"},
            "description": "The methods the path takes, e.g. `GET, POST, HEAD, OPTIONS`.",
        }
    },
    "429": _RETRY_AFTER,
    "503": _RETRY_AFTER,
}


def _not_found(path: str, method: str) -> str | None:
    if "{job_id}" in path:
        return _NOT_FOUND_JOB
    if "{task_id}" in path:
        return _NOT_FOUND_TASK
    if "{group_id}" in path:
        if method == "get":
            return f"{_NOT_FOUND_GROUP} Or a `cursor` the API did not make (code `not_found`)."
        return _NOT_FOUND_GROUP
    if path.endswith("/jobs/") and method == "get":
        return _NOT_FOUND_CURSOR
    return None


#: OpenAPI links: where the id of a created job can be used next (clients and fuzzers follow them).
_JOB_LINKS = {
    "GetJob": "jobs_retrieve",
    "CancelJob": "jobs_cancel",
    "RetryJob": "jobs_retry",
    "FollowJobEvents": "jobs_events",
}


def _links(operation_ids: dict[str, str], parameter: str, expression: str) -> dict[str, Any]:
    return {
        name: {"operationId": operation_id, "parameters": {parameter: expression}}
        for name, operation_id in operation_ids.items()
    }


def add_error_responses(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: document the error shape on every operation,
    and link created jobs to the operations that take their id."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if operation.get("operationId") == "jobs_create":
                for code in ("200", "201"):
                    if code in responses:
                        responses[code]["links"] = _links(
                            _JOB_LINKS, "job_id", "$response.body#/id"
                        )
            if operation.get("operationId") == "tasks_submit" and "200" in responses:
                responses["200"]["links"] = _links(
                    {"GetTaskStatus": "tasks_status"}, "task_id", "$response.body#/task_id"
                )
            errors = dict(_COMMON_ERRORS)
            not_found = _not_found(path, method)
            if not_found:
                errors["404"] = not_found
            if method in {"post", "put", "patch"}:
                errors.update(_BODY_ERRORS)
            if method == "post" and path.endswith(
                ("/jobs/", "/batch/", "/submit", "/retry/", "/replay/")
            ):
                errors.update(_SUBMIT_ERRORS)  # a retry, or a replayed job, costs one submission
            if path.endswith("/events/"):
                errors.update(_STREAM_ERRORS)
            if path.endswith(("/cancel/", "/retry/")):  # not replay: it skips, never 409s
                errors.update(_TRANSITION_ERRORS)
            for code, description in sorted(errors.items()):
                response: dict[str, Any] = {
                    "description": description,
                    "content": {"application/json": {"schema": ref}},
                }
                if code in _HEADERS:
                    response["headers"] = copy.deepcopy(_HEADERS[code])
                operation["responses"].setdefault(code, response)
    return result


class _PayloadView(APIView):
    request = None  # type: ignore[assignment]


def payload_json_schema(
    serializer_class: type[serializers.Serializer[Any]] | None,
) -> dict[str, Any]:
    """The JSON Schema of a payload serializer, with nested components inlined."""
    if serializer_class is None:
        return {"type": "object"}
    auto = AutoSchema()
    auto.registry = ComponentRegistry()
    auto.method = "POST"
    auto.path = "/"
    auto.view = _PayloadView()
    schema = auto._map_basic_serializer(serializer_class(), "request")
    components = {
        component.name: component.schema for component in auto.registry._components.values()
    }
    inlined: dict[str, Any] = _inline(schema, components, depth=0)
    if not serializer_class.__doc__:  # spectacular falls back to the base class docstring
        inlined.pop("description", None)
    if issubclass(serializer_class, PayloadSerializer):
        inlined["additionalProperties"] = False
    return inlined


def _inline(node: Any, components: dict[str, Any], *, depth: int) -> Any:
    if depth > 20:
        return {}
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            target = components.get(ref.rsplit("/", 1)[-1], {})
            return _inline(target, components, depth=depth + 1)
        return {key: _inline(value, components, depth=depth) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item, components, depth=depth) for item in node]
    return node
