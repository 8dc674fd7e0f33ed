"""A paginator that trusts Postgres's row estimate instead of COUNT(*) on big tables."""

from __future__ import annotations

import json
import logging
from functools import cached_property
from typing import Any

from django.core.paginator import Paginator
from django.db import DatabaseError, connections
from django.db.models import QuerySet

from jobs.conf import jobs_settings

logger = logging.getLogger(__name__)


def estimate_count(queryset: QuerySet[Any]) -> int | None:
    """The planner's row estimate for a queryset (None when it cannot be had).

    ``EXPLAIN`` costs a planning step, not a scan: it reads table statistics
    (``ANALYZE``/autovacuum), so it is instant at any size and close enough
    for "about 1,000,000 jobs".
    """
    connection = connections[queryset.db]
    sql, params = queryset.query.get_compiler(using=queryset.db).as_sql()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            row = cursor.fetchone()
    except DatabaseError:
        logger.warning("Could not estimate the row count; counting instead.", exc_info=True)
        return None
    if row is None:
        return None
    plan = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    return int(plan[0]["Plan"]["Plan Rows"])


class EstimatedCountPaginator(Paginator):
    """Counts exactly up to ``JOBS_ADMIN_EXACT_COUNT_LIMIT`` rows, estimates above it.

    ``is_estimate`` tells the template to say "about".
    """

    is_estimate = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if isinstance(queryset, QuerySet):
            estimate = estimate_count(queryset)
            if estimate is not None and estimate > jobs_settings.admin_exact_count_limit:
                self.is_estimate = True
                return estimate
            return queryset.count()
        return len(queryset)
