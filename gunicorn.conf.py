"""Gunicorn settings for the web service, read from the working directory (/app in the image).

The command stays the one in docker-compose.yml::

    gunicorn toolboxai.wsgi:application --bind 0.0.0.0:8000

Gunicorn itself reads ``WEB_CONCURRENCY`` (worker processes), ``FORWARDED_ALLOW_IPS``
(proxies whose X-Forwarded-* headers are trusted) and ``GUNICORN_CMD_ARGS``; this
file reads ``WEB_THREADS`` (threads per worker process).
"""

from __future__ import annotations

import os

# WSGI with a thread pool per process. The API's views are synchronous (DRF, the ORM):
# under an ASGI server every request hopped through sync_to_async, which runs all of a
# process's synchronous code on one thread, so concurrent clients were served one at a
# time (bench/HISTORY.md). Each request, and each open event stream, holds one thread;
# at most half of them stream (API_EVENTS_MAX_STREAMS_PER_PROCESS, read from WEB_THREADS too).
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "16"))
# Heartbeat files of the workers: RAM, so a read-only or slow root filesystem never stalls them.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
# No control socket: nothing uses it, and it would need a writable $HOME.
control_socket_disable = True
# SIGTERM: let requests in flight finish (event streams are closed by the proxy or client).
graceful_timeout = 30
# Idle keep-alive to the proxy in front.
keepalive = 5
# Access log lines to stdout, next to the application's JSON logs, with secret query
# parameters (?api_key=, ?token=) and credential headers redacted (toolboxai/access_log.py).
accesslog = "-"
logger_class = "toolboxai.access_log.RedactingLogger"


def child_exit(server: object, worker: object) -> None:
    """Drop a dead worker's live gauges from the shared metrics (prometheus_client multiprocess)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
