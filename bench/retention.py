"""Retention beside the live system: B's no-op processing while ``cleanup.remove_old_jobs`` runs.

Per latency section (B only): the ledger is pre-filled by ``COPY`` with expired
finished jobs (older than ``JOBS_RETENTION_DAYS``; failed ones older than
``JOBS_FAILED_RETENTION_DAYS``) and their attempt and event rows, shaped as the
workers and the API write them. B's workers then run the no-op row without
cleanup, and again while ``cleanup.remove_old_jobs`` (submitted as a job, run by
the same workers, as the scheduler runs it daily) deletes them. The target (issue
21): the rate with cleanup ≥ 0.8x the rate without, in the same run.

    python -m bench.retention submit    # (child) submit cleanup.remove_old_jobs; prints its id
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.config import Config, Progress
from bench.services import Services, run_json
from bench.staged import run_staged
from bench.workers import start_workers, stop_workers

TARGET = 0.8
#: No-op runs during one cleanup at most (they follow one another until it ends).
MAX_RUNS = 100
#: Progress steps one section's retention row takes.
STEPS = 4
#: The default retention windows (JOBS_RETENTION_DAYS, JOBS_FAILED_RETENTION_DAYS) and
#: how far past them the pre-filled history reaches.
RETENTION_DAYS, FAILED_RETENTION_DAYS, SPAN_DAYS = 30, 90, 90
CHUNK = 20_000  # lines per COPY write
FILL_CHUNK = 100_000  # jobs generated at a time
WORKER_ID = "bench-host:4242:0123456789abcdef"

JOB_COLUMNS = (
    "id, organization_id, job_type, queue, priority, payload, status, attempts, max_retries, "
    "progress, progress_message, result, error_type, error_message, error_traceback, "
    "created_at, started_at, finished_at, enqueued_at"
)
ATTEMPT_COLUMNS = (
    "job_id, number, worker_id, started_at, finished_at, outcome, error_type, error_message"
)
EVENT_COLUMNS = "job_id, organization_id, kind, via, detail, created_at"
ERROR = "EchoFailure", "Failing attempt 1 of 9 on purpose (fail_times)."
TRACEBACK = 'Traceback (most recent call last):\\n  File "jobs/actors/diagnostics.py"\\nEchoFailure'


def _ts(at: datetime) -> str:
    return at.isoformat()


def _history(
    n: int, organization_id: int, now: datetime, offset: int
) -> tuple[list[str], list[str], list[str]]:
    """COPY text lines of n expired jobs, their attempts and events.

    Of every 100 jobs: one cancelled before it ran (a ``cancelled`` event, no attempt),
    one failed after 4 attempts (older than the failed window), one succeeded on a
    second attempt after a user's retry (a ``retried`` event), the rest succeeded on
    their first attempt. Creation times spread over SPAN_DAYS past the window.
    """
    jobs, attempts, events = [], [], []
    span = SPAN_DAYS * 86_400
    payload, result = '{"message": "bench"}', '{"message": "bench"}'
    for i in range(offset, offset + n):
        kind = i % 100
        window = FAILED_RETENTION_DAYS if kind == 1 else RETENTION_DAYS
        created = now - timedelta(days=window + 1, seconds=(i * 7919) % span)
        started, finished = created + timedelta(milliseconds=3), created + timedelta(milliseconds=5)
        jid = str(uuid.uuid4())
        c, s, f = _ts(created), _ts(started), _ts(finished)
        if kind == 0:
            status, tries, res, err, start = "cancelled", 0, "\\N", ("", ""), "\\N"
            events.append(f"{jid}\t{organization_id}\tcancelled\tapi\t{{}}\t{f}")
        elif kind == 1:
            status, tries, res, err, start = "failed", 4, "\\N", ERROR, s
            for number in range(1, 5):
                attempts.append(
                    f"{jid}\t{number}\t{WORKER_ID}\t{s}\t{f}\tfailed\t{ERROR[0]}\t{ERROR[1]}"
                )
        else:
            status, tries, res, err, start = "succeeded", 1, result, ("", ""), s
            if kind == 2:
                tries = 2
                attempts.append(f"{jid}\t1\t{WORKER_ID}\t{s}\t{s}\tfailed\t{ERROR[0]}\t{ERROR[1]}")
                events.append(f"{jid}\t{organization_id}\tretried\tapi\t{{}}\t{s}")
            attempts.append(f"{jid}\t{tries}\t{WORKER_ID}\t{s}\t{f}\tsucceeded\t\t")
        jobs.append(
            f"{jid}\t{organization_id}\tdiagnostics.echo\tdefault\t5\t{payload}\t{status}\t{tries}"
            f"\t3\t{100 if status == 'succeeded' else 0}\t\t{res}\t{err[0]}\t{err[1]}"
            f"\t{TRACEBACK if err[0] else ''}\t{c}\t{start}\t{f}\t{c}"
        )
    return jobs, attempts, events


def _copy(services: Services, table: str, columns: str, lines: list[str]) -> None:
    with services.pg.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for start in range(0, len(lines), CHUNK):
            copy.write("\n".join(lines[start : start + CHUNK]) + "\n")


def _secondary_indexes(services: Services, table: str) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of a table's indexes that back no constraint."""
    rows = services.pg.execute(
        "SELECT indexname, indexdef FROM pg_indexes i WHERE tablename = %s AND NOT EXISTS "
        "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
        [table],
    ).fetchall()
    return [(str(name), str(sql)) for name, sql in rows]


def prefill(services: Services, rows: int) -> dict[str, Any]:
    """COPY ``rows`` expired jobs of the bench organization, with attempts and events.

    ``jobs_job``'s secondary indexes are dropped for the COPY and built again after it
    (several times faster than maintaining ten indexes row by row); the next chunk of
    rows is generated while the current one is copied.
    """
    began = time.monotonic()
    org = int(services.scalar("SELECT id FROM tenants_organization WHERE slug = 'bench'"))
    now = datetime.now(UTC)
    counts = {"jobs": 0, "attempts": 0, "events": 0}
    indexes = _secondary_indexes(services, "jobs_job")
    for name, _ in indexes:
        services.pg.execute(f'DROP INDEX "{name}"')
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            starts = list(range(0, rows, FILL_CHUNK))
            sizes = [min(FILL_CHUNK, rows - start) for start in starts]
            pending = pool.submit(_history, sizes[0], org, now, 0) if sizes else None
            for i, size in enumerate(sizes):
                assert pending is not None
                jobs, attempts, events = pending.result()
                if i + 1 < len(sizes):
                    pending = pool.submit(_history, sizes[i + 1], org, now, starts[i + 1])
                _copy(services, "jobs_job", JOB_COLUMNS, jobs)
                _copy(services, "jobs_jobattempt", ATTEMPT_COLUMNS, attempts)
                _copy(services, "jobs_jobevent", EVENT_COLUMNS, events)
                counts["jobs"] += size
                counts["attempts"] += len(attempts)
                counts["events"] += len(events)
    finally:
        copied = time.monotonic() - began
        for _, sql in indexes:
            services.pg.execute(sql)
    # Long-lived history has been vacuumed and analysed by autovacuum in production.
    services.pg.execute("VACUUM (ANALYZE) jobs_job, jobs_jobattempt, jobs_jobevent")
    return {**counts, "copy_seconds": copied, "seconds": time.monotonic() - began}


def _cleanup_row(services: Services, job_id: str) -> dict[str, Any] | None:
    row = services.pg.execute(
        "SELECT status, started_at, finished_at, result, error_message FROM jobs_job WHERE id = %s",
        [job_id],
    ).fetchone()
    if row is None:
        return None
    status, started, finished, result, error = row
    return {
        "status": status,
        "started_at": started,
        "finished_at": finished,
        "result": result,
        "error": error,
    }


def _wait(services: Services, job_id: str, key: str, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = _cleanup_row(services, job_id)
        if row is not None and row[key] is not None:
            return row
        time.sleep(0.2)
    return _cleanup_row(services, job_id)


def run_retention(cfg: Config, services: Services, progress: Progress) -> dict[str, Any]:
    """Pre-fill, no-op runs without cleanup, then while cleanup runs; cleanup's duration."""
    name = f"{cfg.latency} · retention of {cfg.retention_jobs:,} expired jobs"
    runs = max(2, cfg.rounds)  # the ratio's denominator: never a single run
    out: dict[str, Any] = {
        "rows": cfg.retention_jobs,
        "noop_jobs": cfg.noop_jobs,
        "settings": {
            "batch_size": os.environ.get("JOBS_CLEANUP_BATCH_SIZE", "1000 (default)"),
            "pause_ms": os.environ.get("JOBS_CLEANUP_PAUSE_MS", "100 (default)"),
        },
    }
    services.reset()
    progress.step(f"{name}: pre-filling the ledger by COPY")
    out["prefill"] = prefill(services, cfg.retention_jobs)
    out["load_before"] = list(os.getloadavg())
    progress.step(f"{name}: B's workers, {runs} no-op run(s) without cleanup")
    workers = start_workers(cfg, "b", f"{cfg.latency}-retention")
    try:
        time.sleep(1.5)
        out["without"] = [
            run_staged(cfg, services, "b", kind="noop", n=cfg.noop_jobs) for _ in range(runs)
        ]
        progress.step(f"{name}: cleanup.remove_old_jobs, no-op runs until it ends")
        job_id = str(run_json(cfg, ["-m", "bench.retention", "submit"])["job_id"])
        row = _wait(services, job_id, "started_at", 120)
        out["with"] = []
        while row is not None and row["finished_at"] is None and len(out["with"]) < MAX_RUNS:
            run = run_staged(cfg, services, "b", kind="noop", n=cfg.noop_jobs)
            row = _cleanup_row(services, job_id)
            run["during_cleanup"] = row is not None and row["finished_at"] is None
            out["with"].append(run)
        progress.step(f"{name}: the cleanup's end, then one no-op run after it")
        row = _wait(services, job_id, "finished_at", 3_600)
        out["after"] = [run_staged(cfg, services, "b", kind="noop", n=cfg.noop_jobs)]
    finally:
        stop_workers(workers)
    services.reset()
    if row is not None and row["started_at"] and row["finished_at"]:
        row["seconds"] = (row["finished_at"] - row["started_at"]).total_seconds()
    out["cleanup"] = {
        k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in (row or {}).items()
    }
    return out


def _median_rate(runs: list[dict[str, Any]]) -> float | None:
    rates = [r["rate"] for r in runs if r.get("during_cleanup", True)]
    return statistics.median(rates) if rates else None


def target(retention: dict[str, Any]) -> dict[str, Any]:
    """The retention target as a row of the section's targets."""
    without, during = _median_rate(retention["without"]), _median_rate(retention["with"])
    ratio = None if without is None or during is None or not without else during / without
    verdict = "not measured" if ratio is None else ("met" if ratio >= TARGET else "missed")
    return {
        "target": f"no-op processing while cleanup removes {retention['rows']:,} expired jobs "
        f"≥ {TARGET}x without",
        "ratio": ratio,
        "b": during,
        "other": without,
        "other_name": "without cleanup",
        "unit": "jobs/s",
        "verdict": verdict,
    }


def _rates(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "no run"
    rates = [r["rate"] for r in runs if r.get("during_cleanup", True)]
    dropped = len(runs) - len(rates)
    text = f"{statistics.median(rates):,.0f} (runs: {', '.join(f'{v:,.0f}' for v in rates)})"
    return text + (f"; {dropped} run(s) the cleanup's end overtook not counted" if dropped else "")


def render(section: dict[str, Any]) -> list[str]:
    """The retention row's table under a section's targets ([] when it did not run)."""
    retention = section.get("retention")
    if not retention:
        return []
    t, fill, cleanup = target(retention), retention["prefill"], retention["cleanup"]
    result = cleanup.get("result") or {}
    deleted = int(result.get("deleted_finished", 0)) + int(result.get("deleted_failed", 0))
    seconds = cleanup.get("seconds")
    took = (
        f"{deleted:,} jobs deleted in {seconds:,.0f} s ({deleted / seconds:,.0f} jobs/s); "
        f"`JOBS_CLEANUP_BATCH_SIZE` {retention['settings']['batch_size']}, "
        f"`JOBS_CLEANUP_PAUSE_MS` {retention['settings']['pause_ms']}"
        if seconds
        else f"did not finish ({cleanup.get('status')}: {cleanup.get('error') or 'timed out'})"
    )
    ratio = "n/a" if t["ratio"] is None else f"{t['ratio']:.2f}x"
    return [
        "",
        f"| retention of {retention['rows']:,} expired jobs (bench/retention.py) | |",
        "|---|---|",
        f"| pre-filled by COPY | {fill['jobs']:,} jobs, {fill['attempts']:,} attempts, "
        f"{fill['events']:,} events in {fill['seconds']:.0f} s (with VACUUM ANALYZE) |",
        f"| load average before the runs | {retention['load_before'][0]:.2f} / "
        f"{retention['load_before'][1]:.2f} / {retention['load_before'][2]:.2f} |",
        f"| no-op processing ({retention['noop_jobs']:,} jobs), jobs/s: without cleanup "
        f"| {_rates(retention['without'])} |",
        f"| while `cleanup.remove_old_jobs` ran | {_rates(retention['with'])} |",
        f"| after it ended | {_rates(retention.get('after', []))} |",
        f"| the cleanup, on the same workers | {took} |",
        f"| target: while ≥ {TARGET}x without | {ratio} **{t['verdict']}** |",
    ]


def submit() -> dict[str, Any]:
    """(child) Submit cleanup.remove_old_jobs as the scheduler does; returns its id."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "toolboxai.settings")
    import django

    django.setup()
    from jobs.services import job_submit

    return {"job_id": str(job_submit(job_type="cleanup.remove_old_jobs").job.id)}


if __name__ == "__main__":
    if sys.argv[1:] != ["submit"]:
        sys.exit("usage: python -m bench.retention submit")
    from bench.systems.common import emit

    emit(submit())
