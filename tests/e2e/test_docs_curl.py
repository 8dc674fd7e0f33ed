"""The curl examples of README.md and the docs pages, run as written against a live server.

Each example runs in bash with ``$TBX`` (the server) and ``$TBX_KEY`` (an API key); the
id of the last job (``$JOB_ID``) or task (``$TASK_ID``) an example got back is kept for
the next ones, as a reader would copy it. Where a page shows the answer, the real one
must have its shape: the status line, the same fields, the same error code, the same
kinds of events.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User

from tenants.models import Membership, Organization, Role
from tenants.services import api_key_create
from tests.docs_pages import Block, all_blocks
from tests.e2e.commands import start_worker
from tests.e2e.conftest import ManagedProcess, WebServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CURL = [
    block
    for block in all_blocks("bash")
    if block.skip is None and re.search(r"^\s*curl ", block.code, re.MULTILINE)
]


def _split_http(text: str) -> tuple[str | None, str]:
    """The status code and body of ``curl -i`` output, or (None, text) without headers."""
    if not text.startswith("HTTP/"):
        return None, text
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    return head.split()[1], body


def _shape(value: Any) -> Any:
    """What an answer must share with the one a page shows: its fields and error code."""
    if isinstance(value, list):
        return ["list", _shape(value[0]) if value else None]
    if isinstance(value, dict):
        error = value.get("error")
        if isinstance(error, dict):
            return {"error": sorted(error), "code": error.get("code")}
        return sorted(value)
    return type(value).__name__


def _check_answer(block: Block, stdout: str) -> None:
    assert block.output is not None
    shown_status, shown_body = _split_http(block.output.code.strip())
    status, body = _split_http(stdout)
    assert status == shown_status, f"{block.where}: status {status}, the page shows {shown_status}"
    shown_events = re.findall(r"^event: (\w+)$", shown_body, re.MULTILINE)
    if shown_events:
        events = re.findall(r"^event: (\w+)$", body, re.MULTILINE)
        assert set(shown_events) <= set(events), f"{block.where}: events {events}"
        return
    assert _shape(json.loads(body)) == _shape(json.loads(shown_body)), block.where


def test_the_curl_examples_answer_as_the_pages_show(
    broker: Any,
    start_web: Callable[..., WebServer],
    start_command: Callable[..., ManagedProcess],
    wait_for: Callable[..., Any],
) -> None:
    assert len(CURL) >= 10
    user = User.objects.create_user("reader")
    school = Organization.objects.create(slug="docs-school", name="Docs School")
    membership = Membership.objects.create(user=user, organization=school, role=Role.OWNER)
    key = api_key_create(membership=membership, name="docs").raw
    start_worker(start_command, wait_for)
    web = start_web()
    env = {**os.environ, "TBX": web.url, "TBX_KEY": key}

    for block in CURL:
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.code],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert ran.returncode == 0, f"{block.where}: {ran.stderr}"
        _status, body = _split_http(ran.stdout)
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and "id" in answer:
            env["JOB_ID"] = answer["id"]
        if isinstance(answer, dict) and "task_id" in answer:
            env["TASK_ID"] = answer["task_id"]
        if block.output is not None:
            _check_answer(block, ran.stdout)
