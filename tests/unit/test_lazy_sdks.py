"""The OpenAI and SendGrid SDKs are imported on first use, not when a process starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: What a worker process (``jobs.worker``, as ``manage.py rundramatiq`` starts it) and a
#: web process (the WSGI application and its URLconf) import before their first request.
STARTUP = """
import json, sys
import jobs.worker
import toolboxai.wsgi
from django.urls import get_resolver
get_resolver().url_patterns
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {names!r})))
"""
SDKS = ["openai", "sendgrid", "python_http_client", "pydantic", "pydantic_core"]


def test_starting_a_worker_or_the_web_app_imports_no_provider_sdk() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "toolboxai.settings"}
    proc = subprocess.run(
        [sys.executable, "-c", STARTUP.format(names=set(SDKS))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
