"""System C's Django settings: a minimal Django project with django-celery-results.

Shares the bench's Postgres database (DATABASE_URL) with the project; its
results live in ``django_celery_results_taskresult``.
"""

from __future__ import annotations

import os

from toolboxai.env import parse_database_url

SECRET_KEY = "bench-only-not-secret"  # noqa: S105
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["django.contrib.contenttypes", "django_celery_results"]
DATABASES = {"default": parse_database_url(os.environ["DATABASE_URL"])}
DATABASES["default"]["CONN_MAX_AGE"] = 60
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
