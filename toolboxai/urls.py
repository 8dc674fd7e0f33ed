from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django_prometheus.exports import ExportToDjangoView

from jobs.api import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("jobs.api.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Request, response and database metrics of the web process (django-prometheus).
    path("metrics", ExportToDjangoView, name="prometheus-metrics"),
]

handler404 = "jobs.api.errors.handler404"
handler500 = "jobs.api.errors.handler500"
