"""``GET /metrics`` of the web process: django-prometheus's page, for Prometheus only.

Answered to ``Authorization: Bearer <METRICS_TOKEN>`` or to an address in
METRICS_ALLOWED_NETWORKS (``jobs.metrics_access``); 401 with
``WWW-Authenticate: Bearer`` or 403 otherwise. With DJANGO_DEBUG=1 the
networks default to loopback, so ``make run`` serves it on this machine.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django_prometheus.exports import ExportToDjangoView

from jobs.metrics_access import metrics_denial


def metrics(request: HttpRequest) -> HttpResponse:
    denial = metrics_denial(
        authorization=request.headers.get("Authorization", ""),
        address=request.META.get("REMOTE_ADDR", ""),
    )
    if denial is not None:
        return HttpResponse(
            f"{denial.message}\n",
            status=denial.status,
            content_type="text/plain; charset=utf-8",
            headers=denial.headers,
        )
    return ExportToDjangoView(request)
