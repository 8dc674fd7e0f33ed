"""The worker exporter's multiprocess collector survives a metric file being created."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from jobs.exporter import ProcessFilesCollector


def test_a_scrape_skips_a_metric_file_another_process_is_still_creating(tmp_path: Path) -> None:
    written = MmapedDict(str(tmp_path / "counter_101.db"))
    key = mmap_key("jobs_done", "jobs_done_total", ["queue"], ["default"], "Jobs done.")
    written.write_value(key, 7.0, 0.0)
    written.close()
    # What a worker process leaves between creating its file and sizing it.
    (tmp_path / "counter_102.db").touch()

    registry = CollectorRegistry()
    ProcessFilesCollector(registry, path=str(tmp_path))
    text = generate_latest(registry).decode()

    assert 'jobs_done_total{queue="default"} 7.0' in text
