"""`make monitoring-check`: `promtool check metrics` on a real scrape of the web's and a worker's /metrics.

Starts, against a scratch database on DATABASE_URL's Postgres server (dropped at the
end) and a private redis-server, the web server (`manage.py runserver`) and a worker
(`manage.py rundramatiq` with its exporter), runs a few jobs so that every family has
samples, scrapes both /metrics and pipes each scrape to `promtool check metrics`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import docs_screenshots as helpers  # its neighbour in scripts/, on sys.path when run

ROOT = Path(__file__).resolve().parent.parent

# One per run: two checks on one Postgres server must not drop each other's database.
helpers.SCRATCH_DB = f"toolboxai_monitoring_check_{os.getpid()}"
TOKEN = "monitoring-check-token-0123456789"  # noqa: S105 (a throwaway token of a throwaway server)


def scrape(url: str) -> str:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
        return str(response.read().decode())


def answers(url: str) -> bool:
    try:
        return "toolboxai_jobs_" in scrape(url) or "django_http" in scrape(url)
    except OSError:
        return False


def promtool_check(name: str, text: str) -> bool:
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    problems = (result.stdout + result.stderr).strip()
    families = sum(1 for line in text.splitlines() if line.startswith("# TYPE "))
    if result.returncode == 0:
        print(f"promtool check metrics: {name} /metrics passes ({families} families)")
        return True
    print(f"promtool check metrics: {name} /metrics fails:\n{problems}", file=sys.stderr)
    return False


def main() -> int:
    server_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/toolboxai")
    helpers.recreate_database(server_url)
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        stack.callback(helpers.recreate_database, server_url, drop_only=True)
        directory = Path(tmp)
        web_port, worker_port = helpers.free_port(), helpers.free_port()
        os.environ.update(
            DJANGO_SETTINGS_MODULE="toolboxai.settings",
            DJANGO_DEBUG="1",
            DATABASE_URL=helpers.scratch_url(server_url),
            REDIS_URL=stack.enter_context(helpers.redis_server(directory)),
            METRICS_TOKEN=TOKEN,
            PROMETHEUS_PORT=str(worker_port),
            JOBS_METRICS_DIR=str(directory / "metrics"),
            LOG_FORMAT="text",
        )
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v0"], cwd=ROOT, check=True
        )
        stack.enter_context(
            helpers.process(
                ["runserver", "--noreload", f"127.0.0.1:{web_port}"], directory / "web.log"
            )
        )
        stack.enter_context(
            helpers.process(["rundramatiq", "-p", "1", "-t", "2"], directory / "worker.log")
        )
        web = f"http://127.0.0.1:{web_port}/metrics"
        worker = f"http://127.0.0.1:{worker_port}/metrics"
        helpers.wait_until(lambda: answers(web), "the web's /metrics", timeout=180)
        helpers.wait_until(lambda: answers(worker), "the worker's /metrics", timeout=180)
        subprocess.run(
            [
                sys.executable,
                "manage.py",
                "shell",
                "-c",
                "from jobs.services import JobRequest, job_submit_many; job_submit_many("
                "requests=[JobRequest('diagnostics.echo', {'message': 'm'}) for _ in range(3)])",
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        helpers.wait_until(
            lambda: (
                'toolboxai_jobs_total{job_type="diagnostics.echo",queue="default",'
                'status="succeeded"} 3.0' in scrape(worker)
            ),
            "three jobs counted by the worker",
            timeout=120,
        )
        ok = promtool_check("web", scrape(web)) & promtool_check("worker", scrape(worker))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
