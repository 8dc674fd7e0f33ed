"""The worker's Prometheus exporter: one HTTP endpoint for all processes of a ``rundramatiq``.

``manage.py rundramatiq`` points every worker process at one
``PROMETHEUS_MULTIPROC_DIR`` (emptied at start) and runs :func:`serve` as a
Dramatiq fork process (``jobs.worker:serve_metrics``, which sets Django up first). Each scrape sums the processes' counters and histograms
and reads the live broker state (queue depths, oldest message, dead letters,
workers alive) from Redis through :mod:`jobs.selectors.queues`.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import redis
from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from jobs.conf import jobs_settings
from jobs.selectors.queues import queue_stats, workers

logger = logging.getLogger(__name__)


class BrokerCollector(Collector):
    """Gauges read from Redis at scrape time (cluster-wide: every exporter reports the same).

    - ``queue_messages{queue, state}``: state is ready, in_flight, delayed or dead.
    - ``queue_oldest_message_age_seconds{queue}``: 0 when nothing waits.
    - ``workers_alive``: worker processes with a fresh heartbeat.
    - ``jobs_broker_up``: 1 when Redis answered this scrape, else 0.
    """

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("jobs_broker_up", "1 when Redis answered this scrape.")
        try:
            stats = queue_stats()
            alive = workers()
        except redis.RedisError as exc:
            logger.warning("Metrics scrape could not read Redis: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily(
            "queue_messages", "Messages in a queue (all priority bands).", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            "queue_oldest_message_age_seconds",
            "Age of the oldest message waiting in a queue, in seconds (0 when none waits).",
            labels=["queue"],
        )
        for s in stats:
            depth.add_metric([s.queue, "ready"], s.ready)
            depth.add_metric([s.queue, "in_flight"], s.in_flight)
            depth.add_metric([s.queue, "delayed"], s.delayed)
            depth.add_metric([s.queue, "dead"], s.dead)
            oldest.add_metric([s.queue], s.oldest_ready_age_seconds or 0.0)
        yield depth
        yield oldest
        workers_alive = GaugeMetricFamily(
            "workers_alive", "Worker processes whose heartbeat is fresh, in every deployment."
        )
        workers_alive.add_metric([], len(alive))
        yield workers_alive


def prepare_metrics_dir(path: str) -> None:
    """Empty (or create) the multiprocess directory, so counters restart with the deployment."""
    directory = Path(path)
    if directory.exists():
        for entry in directory.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    directory.mkdir(parents=True, exist_ok=True)


class ProcessFilesCollector(MultiProcessCollector):
    """prometheus_client's multiprocess collector, minus the files still being created.

    A worker process creates a metric's file empty and sizes it a moment
    later; a scrape that reads it in between failed whole (``struct.error``,
    HTTP 500: prometheus/client_python#1199). An empty file holds no value
    yet, so it is left out of that scrape.
    """

    def collect(self) -> Iterable[Metric]:
        files = [f for f in glob.glob(os.path.join(self._path, "*.db")) if _holds_data(f)]
        return self.merge(files, accumulate=True)


def _holds_data(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except OSError:  # removed since the glob (a dead process's live gauge)
        return False


def build_registry(metrics_dir: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessFilesCollector(registry, path=metrics_dir)
    registry.register(BrokerCollector())
    return registry


def serve() -> int:
    """Serve ``/metrics`` on PROMETHEUS_HOST:PROMETHEUS_PORT (``rundramatiq``'s fork process)."""
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or jobs_settings.metrics_dir
    host, port = jobs_settings.prometheus_host, jobs_settings.prometheus_port
    try:
        server, _thread = start_http_server(port, addr=host, registry=build_registry(metrics_dir))
    except OSError as exc:
        logger.error(
            "The worker metrics exporter cannot listen on %s:%d (%s). Set PROMETHEUS_PORT to a "
            "free port, or PROMETHEUS_PORT=0 to run without the exporter.",
            host,
            port,
            exc,
        )
        return 1
    logger.info("Worker metrics exporter listening on http://%s:%d/metrics", host, port)
    try:
        threading.Event().wait()
    finally:
        server.shutdown()
    return 0
