"""Daily per-organization roll-ups of the ledger (``analytics.generate_daily_report``)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from jobs.models import DailyReport, Job, JobStatus

_PG_DURATIONS = """
SELECT organization_id,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM finished_at - started_at)),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM finished_at - started_at))
  FROM jobs_job
 WHERE organization_id IS NOT NULL
   AND created_at >= %(start)s AND created_at < %(end)s
   AND status IN ('succeeded', 'failed')
   AND started_at IS NOT NULL AND finished_at IS NOT NULL
 GROUP BY organization_id
"""


def daily_report_generate(*, day: date) -> list[DailyReport]:
    """Write (or rewrite) the report of every organization with jobs created on ``day`` (UTC).

    Counts are by status and by type; durations are the p50 and p95 of
    start-to-finish times of succeeded and failed jobs; the failure rate is
    failed / (succeeded + failed). Running it twice for a day rewrites the rows.
    """
    start = datetime.combine(day, time.min, tzinfo=UTC)
    end = start + timedelta(days=1)
    jobs = Job.objects.filter(organization__isnull=False, created_at__gte=start, created_at__lt=end)
    by_status: dict[int, dict[str, int]] = defaultdict(dict)
    counts = jobs.values_list("organization_id", "status").annotate(n=Count("id")).order_by()
    for org_id, status, n in counts:
        by_status[org_id][status] = n
    by_type: dict[int, dict[str, int]] = defaultdict(dict)
    type_counts = jobs.values_list("organization_id", "job_type").annotate(n=Count("id")).order_by()
    for org_id, name, n in type_counts:
        by_type[org_id][name] = n
    durations = _percentiles(start, end)

    now = timezone.now()
    reports = []
    with transaction.atomic():
        for org_id in sorted(by_status):
            statuses = by_status[org_id]
            succeeded = statuses.get(JobStatus.SUCCEEDED, 0)
            failed = statuses.get(JobStatus.FAILED, 0)
            p50, p95 = durations.get(org_id, (None, None))
            report, _ = DailyReport.objects.update_or_create(
                organization_id=org_id,
                day=day,
                defaults={
                    "total_jobs": sum(statuses.values()),
                    "by_status": dict(sorted(statuses.items())),
                    "by_type": dict(sorted(by_type[org_id].items())),
                    "p50_duration_ms": p50,
                    "p95_duration_ms": p95,
                    "failure_rate": round(failed / (succeeded + failed), 4)
                    if succeeded + failed
                    else None,
                    "generated_at": now,
                },
            )
            reports.append(report)
    return reports


def _percentiles(start: datetime, end: datetime) -> dict[int, tuple[int | None, int | None]]:
    with connection.cursor() as cursor:
        cursor.execute(_PG_DURATIONS, {"start": start, "end": end})
        return {int(org_id): (_ms(p50), _ms(p95)) for org_id, p50, p95 in cursor.fetchall()}


def _ms(seconds: object) -> int | None:
    if seconds is None:
        return None
    return max(0, round(float(seconds) * 1000))  # type: ignore[arg-type]
