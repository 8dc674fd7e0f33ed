"""The API's operations as its OpenAPI schema lists them, for tests that sweep every endpoint.

Reading the schema (not a hand-written list) means a new endpoint is swept
as soon as it is routed: a sweep that meets a path parameter it cannot fill
fails instead of skipping the endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rest_framework.test import APIClient

SCHEMA_URL = "/api/v1/schema/"
HTTP_METHODS = ("get", "put", "post", "patch", "delete")


@dataclass(frozen=True)
class Operation:
    """One method of one path of the schema.

    Parameters:
      path: the templated path, e.g. ``/api/v1/jobs/{job_id}/``.
      path_params: names of its path parameters, in order.
      has_body: whether the operation takes a request body.
    """

    method: str
    path: str
    path_params: tuple[str, ...]
    has_body: bool

    def url(self, values: Mapping[str, str]) -> str:
        missing = [name for name in self.path_params if name not in values]
        assert not missing, (
            f"{self.method.upper()} {self.path} has path parameter(s) {missing} that this "
            "sweep does not know how to fill; teach it (add them to its fillers) so the new "
            "endpoint is covered."
        )
        url = self.path
        for name in self.path_params:
            url = url.replace("{" + name + "}", values[name])
        return url

    def call(self, client: APIClient, url: str, **extra: Any) -> Any:
        """Call ``url`` with this operation's method (an empty JSON object as the body if any)."""
        if self.has_body:
            return getattr(client, self.method)(url, {}, format="json", **extra)
        return getattr(client, self.method)(url, **extra)


def api_operations() -> list[Operation]:
    """Every operation of the served schema (``GET /api/v1/schema/?format=json``)."""
    response = APIClient().get(SCHEMA_URL, {"format": "json"})
    assert response.status_code == 200, response.content
    schema = response.json()
    operations = []
    for path, item in schema["paths"].items():
        shared = item.get("parameters", [])
        for method in HTTP_METHODS:
            op = item.get(method)
            if op is None:
                continue
            params = [*shared, *op.get("parameters", [])]
            operations.append(
                Operation(
                    method=method,
                    path=path,
                    path_params=tuple(p["name"] for p in params if p["in"] == "path"),
                    has_body="requestBody" in op,
                )
            )
    # A schema that lost its paths would make every sweep pass vacuously.
    assert len(operations) >= 10, f"the schema lists only {len(operations)} operations"
    return operations
