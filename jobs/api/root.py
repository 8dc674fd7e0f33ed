"""``GET /api/v1/``: the API's root, with a link to the docs, the schema and each collection.

As DRF's ``DefaultRouter`` root: JSON for JSON clients, the browsable API for a
browser. It shows no organization's data, so it needs no key; a key sent with it
is still checked (a revoked one gets 401). Every link is shown to everyone: each
endpoint checks its own scope when followed (``workers`` needs ``ops``).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

#: Link name → route name (in the ``api`` namespace), in the order shown.
LINKS = {
    "docs": "api:docs",
    "schema": "api:schema",
    "job-types": "api:job-type-list",
    "jobs": "api:job-list",
    "jobs-batch": "api:job-batch",
    "dead-letters": "api:dead-letter-list",
    "queues": "api:queue-list",
    "workers": "api:worker-list",
    "tasks-submit": "api:task-submit",
}


@extend_schema(exclude=True)  # like the schema and the docs, which it links to
class APIRootView(APIView):
    """The toolboxai jobs API. Authenticate with `Authorization: Bearer <api key>`.

    `docs` is the Swagger UI, `schema` the OpenAPI 3 schema; `jobs` lists and
    submits jobs, `job-types` lists what you may submit; `dead-letters` groups
    failed jobs, `queues` and `workers` show what runs (`workers` needs the `ops` scope).
    """

    name = "API root"
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response({name: reverse(route, request=request) for name, route in LINKS.items()})
