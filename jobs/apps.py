from __future__ import annotations

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Django requires these imports here (the app registry is ready only now):
        # the system checks register themselves on import, setup() builds the broker,
        # and the receivers below connect to Django's signals.
        from jobs import broker, checks  # noqa: F401
        from jobs.admin import login_throttle
        from jobs.api import connections
        from jobs.transport import key_invalidation

        broker.setup()
        connections.connect()
        login_throttle.connect()
        key_invalidation.connect()
