from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from jobs.api import health, metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("jobs.api.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Request, response and database metrics of the web process (django-prometheus),
    # for the METRICS_TOKEN or METRICS_ALLOWED_NETWORKS only.
    path("metrics", metrics.metrics, name="prometheus-metrics"),
]

handler404 = "jobs.api.errors.handler404"
handler500 = "jobs.api.errors.handler500"
