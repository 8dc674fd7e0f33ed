"""The outbox of submissions: which committed jobs still wait for their send to Redis."""

from __future__ import annotations

import logging

from django.db import DatabaseError, connection

from jobs.models import JobOutbox

logger = logging.getLogger(__name__)


def job_outbox_delete(*, outbox_id: int) -> None:
    """Forget a submission's outbox row once its messages reached Redis.

    A failure is logged, not raised: the messages are in Redis, and at worst
    the recovery loop sends them again, which the ledger skips.
    """
    try:
        # Plain SQL: QuerySet.delete() collects related objects and sends signals first,
        # which cost more CPU than the rest of a single submission's database work.
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {connection.ops.quote_name(JobOutbox._meta.db_table)} "  # noqa: S608
                "WHERE id = %s",
                [outbox_id],
            )
    except DatabaseError as exc:
        logger.warning(
            "Could not delete outbox row %s after its send (%s); the recovery loop will "
            "send its jobs again and the ledger will skip the duplicates.",
            outbox_id,
            exc,
        )
