from __future__ import annotations

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # checks and admin_reports register themselves on import.
        from jobs import admin_reports, broker, checks, key_invalidation  # noqa: F401
        from jobs.admin import login_throttle
        from jobs.api import connections

        broker.setup()
        connections.connect()
        login_throttle.connect()
        key_invalidation.connect()
