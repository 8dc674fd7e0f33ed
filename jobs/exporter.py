"""The worker's Prometheus exporter: one HTTP endpoint for all processes of a ``rundramatiq``.

``manage.py rundramatiq`` points every worker process at one
``PROMETHEUS_MULTIPROC_DIR`` (emptied at start) and runs :func:`serve` as a
Dramatiq fork process (``jobs.worker:serve_metrics``, which sets Django up first). Each scrape sums the processes' counters and histograms
and reads the live broker state (queue depths, oldest message, dead letters,
workers alive, the scheduler's leader lock) from Redis through
:mod:`jobs.selectors.queues`, and each organization's backlog from the ledger. Beyond loopback it
answers only to METRICS_TOKEN or METRICS_ALLOWED_NETWORKS (:mod:`jobs.metrics_access`).
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis
from django.db import DatabaseError, connection
from prometheus_client import make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from jobs.conf import jobs_settings
from jobs.metrics import PREFIX
from jobs.metrics_access import is_loopback_host, metrics_denial
from jobs.scheduler.overview import scheduler_leader
from jobs.selectors.dashboard import backlog_per_organization
from jobs.selectors.queues import queue_stats, workers

#: A WSGI application (PEP 3333), loosely typed as wsgiref's own helpers are.
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

logger = logging.getLogger(__name__)


class BrokerCollector(Collector):
    """Gauges read from Redis at scrape time (cluster-wide: every exporter reports the same).

    - ``toolboxai_jobs_broker_up``: 1 when Redis answered this scrape, else 0.
    - ``toolboxai_jobs_queue_messages{queue, state}``: state is ready, in_flight, delayed or dead.
    - ``toolboxai_jobs_queue_oldest_message_age_seconds{queue}``: 0 when nothing waits.
    - ``toolboxai_jobs_workers_alive``: worker processes with a fresh heartbeat.
    - ``toolboxai_jobs_scheduler_leader``: 1 while a scheduler holds the leader lock.
    """

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}broker_up", "1 when Redis answered this scrape.")
        try:
            stats = queue_stats()
            alive = workers()
            leader = scheduler_leader()
        except redis.RedisError as exc:
            logger.warning("Metrics scrape could not read Redis: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily(
            f"{PREFIX}queue_messages",
            "Messages in a queue (all priority bands).",
            labels=["queue", "state"],
        )
        oldest = GaugeMetricFamily(
            f"{PREFIX}queue_oldest_message_age_seconds",
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
            f"{PREFIX}workers_alive",
            "Worker processes whose heartbeat is fresh, in every deployment.",
        )
        workers_alive.add_metric([], len(alive))
        yield workers_alive
        has_leader = GaugeMetricFamily(
            f"{PREFIX}scheduler_leader",
            "1 while a scheduler (manage.py periodiq) holds the leader lock, else 0.",
        )
        has_leader.add_metric([], 0 if leader is None else 1)
        yield has_leader


#: Organizations with the largest backlogs that get their own series; the rest are summed.
BACKLOG_TOP_ORGANIZATIONS = 20


class LedgerCollector(Collector):
    """Unfinished jobs per organization, read from the ledger at scrape time.

    ``toolboxai_jobs_organization_backlog{organization, status}`` (status:
    queued, running, retrying). ``organization`` is the slug of the
    :data:`BACKLOG_TOP_ORGANIZATIONS` organizations with the largest backlog,
    ``system`` for system jobs and ``other`` for the sum of the rest, so the
    number of series stays bounded however many organizations there are.
    """

    def collect(self) -> Iterator[Metric]:
        try:
            rows = backlog_per_organization(organizations=None)
        except DatabaseError as exc:
            logger.warning("Metrics scrape could not read the ledger: %s", exc)
            return
        finally:
            # Each scrape runs in its own thread: its connection must not outlive it.
            connection.close()
        backlog = GaugeMetricFamily(
            f"{PREFIX}organization_backlog",
            "Unfinished jobs of an organization by status (its slug; system; other: the rest).",
            labels=["organization", "status"],
        )
        named = [r for r in rows if r.organization is not None][:BACKLOG_TOP_ORGANIZATIONS]
        named_slugs = {r.organization for r in named}
        other = [0, 0, 0]
        for r in rows:
            counts = (r.queued, r.running, r.retrying)
            if r.organization is None:
                _add_backlog(backlog, "system", counts)
            elif r.organization in named_slugs:
                _add_backlog(backlog, str(r.organization), counts)
            else:
                other = [a + b for a, b in zip(other, counts, strict=True)]
        _add_backlog(backlog, "other", (other[0], other[1], other[2]))
        yield backlog


def _add_backlog(
    family: GaugeMetricFamily, organization: str, counts: tuple[int, int, int]
) -> None:
    for status, count in zip(("queued", "running", "retrying"), counts, strict=True):
        family.add_metric([organization, status], count)


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
    registry.register(LedgerCollector())
    return registry


def guarded(app: WSGIApp) -> WSGIApp:
    """``app`` for METRICS_TOKEN or METRICS_ALLOWED_NETWORKS only (401 or 403 otherwise)."""

    def guarded_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        denial = metrics_denial(
            authorization=str(environ.get("HTTP_AUTHORIZATION", "")),
            address=str(environ.get("REMOTE_ADDR", "")),
        )
        if denial is None:
            return app(environ, start_response)
        body = f"{denial.message}\n".encode()
        start_response(
            f"{denial.status} {HTTPStatus(denial.status).phrase}",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                *denial.headers.items(),
            ],
        )
        return [body]

    return guarded_app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access-log line per scrape."""


def start_server(host: str, port: int, app: WSGIApp) -> WSGIServer:
    """Serve ``app`` on host:port (IPv4 or IPv6, as the host resolves) from a daemon thread."""
    family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0][0]
    server_class = type("MetricsServer", (_ThreadingServer,), {"address_family": family})
    server: WSGIServer = make_server(
        host, port, app, server_class=server_class, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="metrics-exporter", daemon=True).start()
    return server


def serve() -> int:
    """Serve ``/metrics`` on PROMETHEUS_HOST:PROMETHEUS_PORT (``rundramatiq``'s fork process)."""
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or jobs_settings.metrics_dir
    host, port = jobs_settings.prometheus_host, jobs_settings.prometheus_port
    app: WSGIApp = make_wsgi_app(build_registry(metrics_dir))
    if not is_loopback_host(host):
        app = guarded(app)
    try:
        server = start_server(host, port, app)
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
