"""Processes start without importing the provider SDKs: they are imported on first use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "toolboxai.settings")
import django
django.setup()
import jobs.worker, jobs.actors, toolboxai.urls  # what a worker and the web server load
before = [m for m in ("openai", "sendgrid") if m in sys.modules]
from jobs.integrations import openai as jobs_openai, sendgrid as jobs_sendgrid
jobs_openai.lesson_messages(topic="t", grade_level="g")
print(json.dumps({"at_start": before}))
"""


def test_worker_and_web_modules_load_without_the_openai_and_sendgrid_sdks() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout.strip().splitlines()[-1]) == {"at_start": []}


_WORKER_PROBE = """
import json, sys
import jobs.worker, jobs.actors  # what a worker process loads (jobs.worker sets Django up)
loaded = [m for m in ("httpx2", "jobs.exporter") if m in sys.modules]
print(json.dumps({"at_start": loaded, "serve_metrics": callable(jobs.worker.serve_metrics)}))
"""


def test_worker_processes_load_without_the_roblox_http_client_or_the_metrics_exporter() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", _WORKER_PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert result == {"at_start": [], "serve_metrics": True}
