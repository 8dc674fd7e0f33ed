"""Sets the organization (and the log context) for the length of one message."""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from jobs.logging import bind_log_context, unbind_log_context
from tenants.context import reset_organization_id, set_organization_id


class TenantContext(Middleware):
    """Reads ``organization_id`` from the message options into the tenant ContextVar.

    A message without one is a system job. The value is cleared after the
    message, whether it ran, failed or was skipped.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        organization_id = message.options.get("organization_id")
        self._local.org_token = set_organization_id(organization_id)
        self._local.log_token = bind_log_context(
            job_id=message.message_id,
            organization_id=organization_id,
            actor=message.actor_name,
        )

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        org_token = getattr(self._local, "org_token", None)
        if org_token is not None:
            reset_organization_id(org_token)
            self._local.org_token = None
        log_token = getattr(self._local, "log_token", None)
        if log_token is not None:
            unbind_log_context(log_token)
            self._local.log_token = None

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.after_process_message(broker, message)
