"""How fast the job admin renders with a million job rows.

Loads N jobs (default 1,000,000) into a separate Postgres database with one
``INSERT ... SELECT FROM generate_series`` (about a minute), then renders the
admin pages through Django's test client and prints the median and worst of
several runs. Nothing here runs in the test suite.

    .venv/bin/python bench/admin_speed.py                 # load (once) and measure
    .venv/bin/python bench/admin_speed.py --rows 200000   # a smaller table
    .venv/bin/python bench/admin_speed.py --reload        # drop the rows and load again
    .venv/bin/python bench/admin_speed.py --measure-only --json   # as bench/growth.py runs it

``BENCH_DATABASE_URL`` (default ``postgres://postgres@127.0.0.1:5432/tbx_admin_bench``)
names the database; it is created when missing. Never point it at real data:
``--reload`` truncates the job table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tbx_admin_bench"
)
os.environ["DATABASE_URL"] = BENCH_DATABASE_URL
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "toolboxai.settings")
os.environ["DJANGO_DEBUG"] = "0"
os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver"
os.environ.setdefault("LOG_LEVEL", "WARNING")

ORGANIZATIONS = 50

_LOAD_SQL = """
INSERT INTO jobs_job (
    id, organization_id, job_type, queue, priority, payload, status, attempts, max_retries,
    progress, progress_message, result, error_type, error_message, error_traceback,
    idempotency_key, created_at, started_at, finished_at, dead_lettered_at
)
SELECT
    md5('bench-' || i)::uuid,
    CASE WHEN i %% 100 = 0 THEN NULL ELSE orgs.ids[1 + i %% array_length(orgs.ids, 1)] END,
    (ARRAY['diagnostics.echo', 'content.generate_lesson', 'email.send_transactional',
           'analytics.generate_daily_report', 'roblox.sync'])[1 + i %% 5],
    (ARRAY['default', 'ai_generation', 'email', 'analytics', 'roblox'])[1 + i %% 5],
    5,
    jsonb_build_object('message', 'bench ' || i, 'api_key', 'secret'),
    s.status,
    1,
    3,
    CASE WHEN s.status = 'succeeded' THEN 100 ELSE 0 END,
    '',
    CASE WHEN s.status = 'succeeded' THEN '{"ok": true}'::jsonb END,
    CASE WHEN s.status = 'failed' THEN 'TimeoutError' ELSE '' END,
    CASE WHEN s.status = 'failed' THEN 'Upstream timed out after ' || (i %% 60) || ' s' ELSE '' END,
    '',
    CASE WHEN i %% 3 = 0 THEN 'key-' || i END,
    t.created_at,
    CASE WHEN s.status <> 'queued' THEN t.created_at + interval '1 second' END,
    CASE WHEN s.status IN ('succeeded', 'failed', 'cancelled')
         THEN t.created_at + interval '3 seconds' END,
    CASE WHEN s.status = 'failed' THEN t.created_at + interval '3 seconds' END
FROM generate_series(1, %(rows)s) AS i
CROSS JOIN (SELECT array_agg(id ORDER BY id) AS ids FROM tenants_organization) AS orgs
CROSS JOIN LATERAL (SELECT CASE
        WHEN i %% 100 < 85 THEN 'succeeded'
        WHEN i %% 100 < 92 THEN 'failed'
        WHEN i %% 100 < 94 THEN 'cancelled'
        WHEN i %% 100 < 97 THEN 'queued'
        WHEN i %% 100 < 99 THEN 'running'
        ELSE 'retrying' END AS status) AS s
CROSS JOIN LATERAL (SELECT now() - (i * interval '1 second' * 2592000 / %(rows)s)
        AS created_at) AS t
"""


def ensure_database() -> None:
    import psycopg

    parts = urlsplit(BENCH_DATABASE_URL)
    name = parts.path.lstrip("/")
    with psycopg.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password,
        dbname="postgres",
        autocommit=True,
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def load(rows: int, *, reload: bool) -> None:
    from django.core.management import call_command
    from django.db import connection

    from jobs.models import Job
    from tenants.models import Organization

    call_command("migrate", verbosity=0)
    for n in range(ORGANIZATIONS):
        Organization.objects.get_or_create(slug=f"bench-{n}", defaults={"name": f"Bench {n}"})
    with connection.cursor() as cursor:
        if reload:
            cursor.execute("TRUNCATE jobs_job CASCADE")
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = 'jobs_job'")
        row = cursor.fetchone()
        estimate = row[0] if row else 0
        if estimate >= rows * 0.95 and Job.objects.exists():
            print(f"jobs_job already holds about {estimate:,} rows; use --reload to load again")
            return
        cursor.execute("TRUNCATE jobs_job CASCADE")
        started = time.perf_counter()
        cursor.execute(_LOAD_SQL, {"rows": rows})
        loaded = time.perf_counter() - started
        cursor.execute("VACUUM ANALYZE jobs_job")
    print(f"loaded {rows:,} jobs in {loaded:.1f} s (plus VACUUM ANALYZE)")


def measure(runs: int) -> list[tuple[str, float, float]]:
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    from tenants.models import Membership, Organization

    root, _ = User.objects.get_or_create(
        username="bench-root", defaults={"is_staff": True, "is_superuser": True}
    )
    staff, created = User.objects.get_or_create(username="bench-staff", defaults={"is_staff": True})
    if created:
        staff.user_permissions.add(Permission.objects.get(codename="view_job"))
        Membership.objects.create(user=staff, organization=Organization.objects.get(slug="bench-7"))
    some_id = "f" * 8
    from jobs.models import Job

    first = Job.objects.order_by("-created_at").values_list("id", flat=True).first()
    some_id = str(first) if first else some_id

    pages = [
        ("list, superuser", root, "/admin/jobs/job/"),
        ("status=failed", root, "/admin/jobs/job/?status__exact=failed"),
        ("status=running", root, "/admin/jobs/job/?status__exact=running"),
        ("type + queue", root, "/admin/jobs/job/?job_type=email.send_transactional&queue=email"),
        ("page 200", root, "/admin/jobs/job/?p=200"),
        ("search by id", root, f"/admin/jobs/job/?q={some_id}"),
        ("list, staff of 1 org", staff, "/admin/jobs/job/"),
        ("staff, status=failed", staff, "/admin/jobs/job/?status__exact=failed"),
        ("job detail", root, f"/admin/jobs/job/{some_id}/change/"),
        ("dashboard", root, "/admin/jobs/job/dashboard/"),
    ]
    results = []
    clients: dict[int, Client] = {}
    for label, user, url in pages:
        client = clients.get(user.pk)
        if client is None:
            client = clients[user.pk] = Client()
            client.force_login(user)
        response = client.get(url)  # warm-up: connections, template caches
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}")
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        results.append((label, statistics.median(times), max(times)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--reload", action="store_true", help="truncate and load the rows again")
    parser.add_argument(
        "--measure-only",
        action="store_true",
        help="measure the database as it is (no migration, no load; bench/growth.py)",
    )
    parser.add_argument("--json", action="store_true", help="print the timings as one JSON line")
    args = parser.parse_args()

    if not args.measure_only:
        ensure_database()
    import django

    django.setup()
    if not args.measure_only:
        load(args.rows, reload=args.reload)

    if args.json:
        pages = {label: {"median_ms": m, "worst_ms": w} for label, m, w in measure(args.runs)}
        print(json.dumps({"runs": args.runs, "pages": pages}))
        return

    from jobs.models import Job

    print(f"measuring with about {Job.objects.count():,} jobs, {args.runs} runs per page\n")
    print("| page | median ms | worst ms |")
    print("|---|---:|---:|")
    for label, median, worst in measure(args.runs):
        print(f"| {label} | {median:.0f} | {worst:.0f} |")


if __name__ == "__main__":
    main()
