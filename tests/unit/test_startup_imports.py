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
