from __future__ import annotations

from django.contrib import admin
from django.urls import path
from django_prometheus.exports import ExportToDjangoView

urlpatterns = [
    path("admin/", admin.site.urls),
    # Request, response and database metrics of the web process (django-prometheus).
    path("metrics", ExportToDjangoView, name="prometheus-metrics"),
]
