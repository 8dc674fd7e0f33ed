"""deploy/monitoring/: the Grafana dashboard and the alert rules query only metrics a real worker exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.services import JobRequest, job_submit_many
from tests.e2e.commands import scrape_or_empty, start_exporting_worker
from tests.e2e.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MONITORING = Path(ROOT) / "deploy" / "monitoring"
METRIC = re.compile(r"\b(toolboxai_jobs_\w+)")


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(
        (MONITORING / "grafana" / "dashboards" / "toolboxai-jobs.json").read_text()
    )
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _alert_queries() -> list[str]:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_every_metric_the_dashboard_and_the_alerts_query_is_in_a_real_worker_scrape(
    broker: Any, start_command: Any, wait_for: Any, tmp_path: Path
) -> None:
    queries = _dashboard_queries()
    titles = {
        panel["title"]
        for panel in json.loads(
            (MONITORING / "grafana" / "dashboards" / "toolboxai-jobs.json").read_text()
        )["panels"]
    }
    assert {
        "Throughput per job type",
        "Failures and retries per job type",
        "Queue depth",
        "Oldest waiting message",
        "Dead letters per queue",
        "Workers alive",
        "Enqueue to start latency",
        "Backlog per organization",
    } <= titles
    assert {
        rule["alert"]
        for group in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    } == {
        "ToolboxaiJobsQueueStale",
        "ToolboxaiJobsDeadLettersGrowing",
        "ToolboxaiJobsNoWorkersAlive",
        "ToolboxaiJobsBrokerDown",
        "ToolboxaiJobsFailureRateHigh",
        "ToolboxaiJobsSchedulerLeaderMissing",
    }

    worker, url = start_exporting_worker(start_command, tmp_path, processes=1, threads=2)
    wait_for(lambda: "toolboxai_jobs_workers_alive 1.0" in scrape_or_empty(url), timeout=90)
    job_submit_many(requests=[JobRequest("diagnostics.echo", {"message": "seen"})])
    wait_for(lambda: 'status="succeeded"} 1.0' in scrape_or_empty(url), timeout=60)

    exported = set(re.findall(r"^(\w+)(?:\{| )", scrape_or_empty(url), re.M))
    wanted = {name for query in [*queries, *_alert_queries()] for name in METRIC.findall(query)}
    assert len(wanted) >= 10
    assert wanted - exported == set(), worker.output()
    assert worker.stop() == 0, worker.output()
