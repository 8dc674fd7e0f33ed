"""The growth rows' ledger: a database pre-filled by ``COPY`` with finished jobs.

``prefill`` migrates a database of its own, creates the organizations the rows
belong to (``bench-0`` … ``bench-49``, the ones ``bench/admin_speed.py`` uses,
never the bench's live ``bench`` organization), and loads N finished jobs
(succeeded, failed, cancelled) spread over the last 90 days, with their attempt
rows. It drops the two tables' secondary indexes and unique constraints first,
streams the jobs from Python through ``COPY ... FROM STDIN`` (foreign-key
triggers off for the session), derives the attempts with one
``INSERT ... SELECT``, rebuilds the indexes and runs ``VACUUM ANALYZE``. A marker
table, ``bench_ledger_fill``, records what was loaded: a later run with the same
N reuses the rows; ``refill`` truncates and loads again.

    python -m bench.ledger_fill --rows 5000000 [--refill]   # BENCH_GROWTH_DATABASE_URL
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench.services import conninfo

#: The organizations the pre-filled jobs belong to (``bench/admin_speed.py``'s slugs).
ORGANIZATIONS = 50
DAYS = 90
MARKER = "bench_ledger_fill"
TABLES = ("jobs_job", "jobs_jobattempt")

_JOB_COLUMNS = (
    "id, organization_id, job_type, queue, priority, payload, status, attempts, max_retries, "
    "progress, progress_message, result, error_type, error_message, error_traceback, "
    "idempotency_key, created_at, scheduled_for, started_at, finished_at, "
    "cancel_requested_at, dead_lettered_at, enqueued_at"
)

_TOPICS = ("fractions", "photosynthesis", "the water cycle", "volcanoes", "ancient rome")
_TRACEBACK = (
    "Traceback (most recent call last):  File /app/jobs/worker.py, line 212, in run_attempt"
    "    result = spec.fn(**payload)  File /app/integrations/provider.py, line 88, in call"
    "    response = self.session.post(url, json=body, timeout=self.timeout)"
    "  File /app/.venv/lib/python3.12/site-packages/requests/sessions.py, line 637, in post"
    "    return self.request(POST, url, data=data, json=json, **kwargs)"
    "  File /app/.venv/lib/python3.12/site-packages/requests/adapters.py, line 713, in send"
    "    raise ReadTimeout(e, request=request)"
    "requests.exceptions.ReadTimeout: HTTPSConnectionPool(host=api.provider.example, port=443):"
    " Read timed out. (read timeout=30)"
)


def _kinds(i: int, day: str) -> tuple[str, str, str, str]:
    """(job type, queue, payload JSON, result JSON) of the i-th job: sizes like real ones."""
    k = i % 5
    if k == 0:
        topic = _TOPICS[i % len(_TOPICS)]
        return (
            "content.generate_lesson",
            "ai_generation",
            f'{{"topic": "{topic}", "grade": {3 + i % 9}, "language": "en", "minutes": 45, '
            f'"objectives": ["explain {topic}", "practise with examples", "check understanding"], '
            f'"prompt": "Write a {45}-minute lesson on {topic} for grade {3 + i % 9} with a '
            f"warm-up, direct instruction, guided practice and an exit ticket. Keep the "
            f'reading level age-appropriate and include two differentiation notes.", '
            f'"request_id": "req-{i}"}}',
            f'{{"lesson_id": "les-{i}", "sections": 6, "tokens": {900 + i % 700}, '
            f'"model": "gpt-4o-mini", "title": "Understanding {topic}", "words": {1100 + i % 400}}}',
        )
    if k == 1:
        return (
            "email.send_transactional",
            "email",
            f'{{"to": "user{i % 100000}@school{i % 300}.example.org", "template": "assignment_due", '
            f'"context": {{"student": "Student {i % 100000}", "assignment": "Lesson {i % 1000}", '
            f'"due": "{day}", "url": "https://app.example.org/a/{i}"}}, "api_key": "secret"}}',
            f'{{"provider": "sendgrid", "message_id": "msg-{i}-{i % 9973}", "accepted": true}}',
        )
    if k == 2:
        return (
            "analytics.generate_daily_report",
            "analytics",
            f'{{"day": "{day}", "organization_slug": "bench-{i % ORGANIZATIONS}"}}',
            f'{{"day": "{day}", "total_jobs": {i % 5000}, "failure_rate": 0.0{i % 9}, '
            f'"p50_duration_ms": {200 + i % 300}, "p95_duration_ms": {900 + i % 900}}}',
        )
    if k == 3:
        return (
            "roblox.sync",
            "roblox",
            f'{{"universe_id": {100000 + i % 5000}, "place_id": {900000 + i % 20000}, '
            f'"topic": "lesson-updates", "message": {{"lesson": "les-{i}", "action": "publish"}}}}',
            f'{{"published": true, "universe_id": {100000 + i % 5000}}}',
        )
    return (
        "diagnostics.echo",
        "default",
        f'{{"message": "health check {i}"}}',
        f'{{"echo": "health check {i}"}}',
    )


class _Clock:
    """Timestamp literals for COPY, cheaply: one cached prefix per minute."""

    def __init__(self) -> None:
        self.prefixes: dict[int, str] = {}

    def __call__(self, t: float) -> str:
        minute = int(t // 60)
        prefix = self.prefixes.get(minute)
        if prefix is None:
            prefix = datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%d %H:%M:")
            self.prefixes[minute] = prefix
        return f"{prefix}{t - minute * 60:06.3f}+00"


def job_lines(rows: int, org_ids: list[int], end: float, seed: int = 21) -> Iterator[str]:
    """COPY text lines of ``rows`` finished jobs, oldest first, spread over ``DAYS`` days.

    85 % succeeded, 10 % failed (after 1-4 attempts, dead-lettered), 5 % cancelled;
    1 % are system jobs (no organization, no idempotency key); the organizations are
    skewed (a few large). The scheduler's runs follow (``periodic_lines``).
    """
    rnd = random.Random(seed)
    clock = _Clock()
    span = DAYS * 86400.0
    start = end - span
    n_orgs = len(org_ids)
    for i in range(rows):
        created = start + span * i / rows + rnd.random()
        r = rnd.random()
        org = r"\N" if r < 0.01 else str(org_ids[int(rnd.random() ** 2 * n_orgs)])
        day = clock(created)[:10]
        job_type, queue, payload, result = _kinds(i, day)
        s = rnd.random()
        started = created + 0.002 + rnd.random() * 0.05
        finished = started + 0.05 + rnd.random() * (20 if job_type.startswith("content") else 2)
        c, st, fi = clock(created), clock(started), clock(finished)
        key = f"k-{i}" if i % 3 == 0 and org != r"\N" else r"\N"
        if s < 0.85:
            yield (
                f"{uuid.uuid4()}\t{org}\t{job_type}\t{queue}\t5\t{payload}\tsucceeded\t1\t3\t100"
                f"\t\t{result}\t\t\t\t{key}\t{c}\t\\N\t{st}\t{fi}\t\\N\t\\N\t{c}\n"
            )
        elif s < 0.95:
            attempts = 1 + i % 4
            yield (
                f"{uuid.uuid4()}\t{org}\t{job_type}\t{queue}\t5\t{payload}\tfailed\t{attempts}\t3"
                f"\t0\t\t\\N\tReadTimeout\tHTTPSConnectionPool(host=api.provider.example, "
                f"port=443): Read timed out. (read timeout=30)\t{_TRACEBACK}\t{key}\t{c}\t\\N"
                f"\t{st}\t{fi}\t\\N\t{fi}\t{c}\n"
            )
        else:
            ran = i % 2 == 0
            yield (
                f"{uuid.uuid4()}\t{org}\t{job_type}\t{queue}\t5\t{payload}\tcancelled"
                f"\t{1 if ran else 0}\t3\t0\t\t\\N\t\t\t\t{key}\t{c}\t\\N"
                f"\t{st if ran else chr(92) + 'N'}\t{fi}\t{st if ran else chr(92) + 'N'}"
                f"\t\\N\t{c}\n"
            )


#: The periodic schedules (``jobs.actors``): name, job type, queue, minutes between runs.
SCHEDULES = (
    ("analytics.daily_report", "analytics.generate_daily_report", "analytics", 1440, 120),
    ("cleanup.remove_old_jobs", "cleanup.remove_old_jobs", "low_priority", 1440, 180),
    ("tenant.check_usage_limits", "tenant.check_usage_limits", "tenant_ops", 30, 0),
)


def periodic_lines(end: float) -> Iterator[str]:
    """COPY text lines of the scheduler's runs over ``DAYS`` days: system jobs whose
    idempotency key is ``periodic:<schedule>:<tick>``, as ``jobs.scheduler`` writes them."""
    clock = _Clock()
    first = (int(end) // 86400 - DAYS) * 86400
    for name, job_type, queue, every, offset in SCHEDULES:
        tick = first + offset * 60
        while tick < end - 60:
            c = clock(tick + 0.01)
            fi = clock(tick + 1.5)
            key = "periodic:{}:{}".format(
                name, datetime.fromtimestamp(tick, UTC).strftime("%Y-%m-%dT%H:%MZ")
            )
            yield (
                f"{uuid.uuid4()}\t\\N\t{job_type}\t{queue}\t5\t{{}}\tsucceeded\t1\t3\t100"
                f"\t\t{{}}\t\t\t\t{key}\t{c}\t\\N\t{c}\t{fi}\t\\N\t\\N\t{c}\n"
            )
            tick += every * 60


# One attempt row per attempt a job made: the last one with the job's outcome,
# the earlier ones failed (each retry 30 s after the one before).
_ATTEMPTS_SQL = """
INSERT INTO jobs_jobattempt
    (job_id, number, worker_id, started_at, finished_at, outcome, error_type, error_message)
SELECT j.id, n.n,
       'worker-' || (get_byte(uuid_send(j.id), 0) % 4) || ':' || (1000 + get_byte(uuid_send(j.id), 1))
           || ':' || get_byte(uuid_send(j.id), 2),
       j.started_at - (j.attempts - n.n) * interval '30 seconds',
       j.finished_at - (j.attempts - n.n) * interval '30 seconds',
       CASE WHEN n.n < j.attempts THEN 'failed'
            WHEN j.status = 'succeeded' THEN 'succeeded'
            WHEN j.status = 'cancelled' THEN 'cancelled'
            ELSE 'failed' END,
       CASE WHEN n.n < j.attempts OR j.status = 'failed' THEN 'ReadTimeout' ELSE '' END,
       CASE WHEN n.n < j.attempts OR j.status = 'failed'
            THEN 'Read timed out. (read timeout=30)' ELSE '' END
FROM jobs_job j CROSS JOIN LATERAL generate_series(1, j.attempts) AS n(n)
WHERE j.attempts > 0
"""


def _secondary(conn: psycopg.Connection[Any], table: str) -> list[tuple[str, str]]:
    """(DROP, CREATE) statements of the table's indexes and unique constraints but its key."""
    out: list[tuple[str, str]] = []
    for name, definition in conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = 'u'",
        [table],
    ):
        out.append(
            (
                f'ALTER TABLE {table} DROP CONSTRAINT "{name}"',
                f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}',
            )
        )
    for name, definition in conn.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "WHERE i.indrelid = %s::regclass AND NOT i.indisprimary AND NOT EXISTS "
        "(SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        [table],
    ):
        out.append((f"DROP INDEX {name}", definition))
    return out


def filled(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    """What the marker says was loaded, or None."""
    if conn.execute("SELECT to_regclass(%s)", [MARKER]).fetchone() == (None,):
        return None
    row = conn.execute("SELECT rows, seconds, filled_at FROM bench_ledger_fill").fetchone()
    return None if row is None else {"rows": row[0], "seconds": row[1], "filled_at": row[2]}


def organizations(conn: psycopg.Connection[Any]) -> list[int]:
    """The ids of ``bench-0`` … ``bench-49``, created when missing."""
    for n in range(ORGANIZATIONS):
        conn.execute(
            "INSERT INTO tenants_organization (slug, name, is_active, max_submissions_per_minute, "
            "max_concurrent_jobs, monthly_job_quota, created_at) "
            "SELECT %s, %s, true, 600, 50, NULL, now() "
            "WHERE NOT EXISTS (SELECT 1 FROM tenants_organization WHERE slug = %s)",
            [f"bench-{n}", f"Bench {n}", f"bench-{n}"],
        )
    return [
        row[0]
        for row in conn.execute(
            "SELECT id FROM tenants_organization WHERE slug = ANY(%s) ORDER BY id",
            [[f"bench-{n}" for n in range(ORGANIZATIONS)]],
        )
    ]


def prefill(
    database_url: str, rows: int, *, refill: bool = False, log: Any = print
) -> dict[str, Any]:
    """Load ``rows`` finished jobs unless the marker says they are there; returns the marker.

    The database must exist and be migrated. Truncates the job tables when it loads.
    """
    info, dbname = conninfo(database_url)
    with psycopg.connect(info, dbname=dbname, autocommit=True) as conn:
        marker = filled(conn)
        if marker and marker["rows"] == rows and not refill:
            return {**marker, "reused": True}
        began = time.monotonic()
        org_ids = organizations(conn)
        conn.execute("DROP TABLE IF EXISTS bench_ledger_fill")
        conn.execute(
            "TRUNCATE jobs_job, jobs_jobattempt, jobs_jobevent, jobs_joboutbox, "
            "jobs_providerdelivery"
        )
        conn.execute("SET session_replication_role = replica")  # no FK triggers while loading
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute("SET synchronous_commit = off")
        saved = {t: _secondary(conn, t) for t in TABLES}
        for statements in saved.values():
            for drop, _ in statements:
                conn.execute(drop)
        end = time.time() - 120
        log(f"ledger: loading {rows:,} jobs by COPY into {dbname}")
        with conn.cursor() as cur, cur.copy(f"COPY jobs_job ({_JOB_COLUMNS}) FROM STDIN") as copy:
            chunk: list[str] = []
            for line in job_lines(rows, org_ids, end):
                chunk.append(line)
                if len(chunk) == 5000:
                    copy.write("".join(chunk))
                    chunk = []
            if chunk:
                copy.write("".join(chunk))
            copy.write("".join(periodic_lines(end)))
        jobs_done = time.monotonic()
        log(f"ledger: {rows:,} jobs in {jobs_done - began:.0f} s; their attempts")
        conn.execute(_ATTEMPTS_SQL)
        log(f"ledger: attempts in {time.monotonic() - jobs_done:.0f} s; rebuilding indexes")
        for statements in saved.values():
            for _, create in statements:
                conn.execute(create)
        conn.execute("SET session_replication_role = origin")
        conn.execute("VACUUM ANALYZE jobs_job")
        conn.execute("VACUUM ANALYZE jobs_jobattempt")
        seconds = time.monotonic() - began
        conn.execute(
            "CREATE TABLE bench_ledger_fill (rows bigint, seconds float, filled_at timestamptz)"
        )
        conn.execute("INSERT INTO bench_ledger_fill VALUES (%s, %s, now())", [rows, seconds])
        log(f"ledger: filled in {seconds:.0f} s")
        marker = filled(conn)
        assert marker is not None
        return {**marker, "reused": False}


def main(argv: list[str] | None = None) -> int:
    from bench.config import Config
    from bench.services import Services, migrate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--refill", action="store_true")
    ns = parser.parse_args(argv)
    url = os.environ.get(
        "BENCH_GROWTH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tbx_bench_growth"
    )
    cfg = Config(
        rounds=1,
        scale=1.0,
        systems="b",
        redis_url="redis://127.0.0.1:6379/8",
        database_url=url,
        http=False,
        docs=False,
    )
    Services(cfg).ensure_database()
    migrate(cfg, celery=False)
    print(prefill(url, ns.rows, refill=ns.refill))
    return 0


if __name__ == "__main__":
    sys.exit(main())
