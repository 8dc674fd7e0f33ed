"""Metrics exposure defaults: the worker exporter on loopback, the web's /metrics closed in production."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from toolboxai.env import env_networks

ROOT = Path(__file__).resolve().parents[2]


def _settings(tmp_path: Path, **env: str) -> dict[str, object]:
    """PROMETHEUS_HOST and METRICS_* as toolboxai.settings reads them from ``env`` alone."""
    script = (
        "import json, toolboxai.settings as s; print(json.dumps([s.PROMETHEUS_HOST, "
        "s.METRICS_TOKEN, s.METRICS_ALLOWED_NETWORKS]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "TOOLBOXAI_STATE_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    host, token, networks = json.loads(result.stdout)
    return {"host": host, "token": token, "networks": networks}


def test_the_worker_exporter_listens_on_loopback_unless_configured(tmp_path: Path) -> None:
    production = {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "x" * 50}
    assert _settings(tmp_path)["host"] == "127.0.0.1"
    assert _settings(tmp_path, **production)["host"] == "127.0.0.1"
    assert _settings(tmp_path, PROMETHEUS_HOST="0.0.0.0")["host"] == "0.0.0.0"


def test_metrics_are_open_to_loopback_in_development_and_to_no_network_in_production(
    tmp_path: Path,
) -> None:
    development = _settings(tmp_path, DJANGO_DEBUG="1")
    production = _settings(tmp_path, DJANGO_DEBUG="0", DJANGO_SECRET_KEY="x" * 50)
    configured = _settings(
        tmp_path,
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="x" * 50,
        METRICS_TOKEN="t0ken",
        METRICS_ALLOWED_NETWORKS=" 127.0.0.1/32, 10.0.0.0/8 ",
    )

    assert development == {"host": "127.0.0.1", "token": "", "networks": ["127.0.0.0/8", "::1/128"]}
    assert production["networks"] == [] and production["token"] == ""
    assert configured["token"] == "t0ken"
    assert configured["networks"] == ["127.0.0.1/32", "10.0.0.0/8"]


def test_a_malformed_allowed_network_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for bad in ("10.0.0.1/8", "10.0.0.0/33", "intranet"):
        monkeypatch.setenv("METRICS_ALLOWED_NETWORKS", f"127.0.0.1/32,{bad}")
        with pytest.raises(ImproperlyConfigured, match=rf"METRICS_ALLOWED_NETWORKS has '{bad}'"):
            env_networks("METRICS_ALLOWED_NETWORKS", [])
