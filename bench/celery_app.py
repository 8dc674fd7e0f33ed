"""System C: Celery 5 (prefork) on the same Redis, with django-celery-results' ``django-db`` backend.

Run by ``celery -A bench.celery_app worker --pool prefork -c 8`` with
``DJANGO_SETTINGS_MODULE=bench.celery_settings``.
"""

from __future__ import annotations

import os
import time

import django
import redis
from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.celery_settings")
django.setup()

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/8")
QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "celery")
STAMPS_KEY = "bench:stamps"

app = Celery("bench")
app.conf.update(
    broker_url=REDIS_URL,
    result_backend="django-db",
    task_default_queue=QUEUE,
    # Kombu's Redis transport: priority 0 is the most urgent; these are its default steps.
    broker_transport_options={"priority_steps": [0, 3, 6, 9], "queue_order_strategy": "priority"},
    worker_hijack_root_logger=True,
)

_stamps = redis.Redis.from_url(REDIS_URL)


@app.task(name="bench.noop")
def noop() -> None:
    """Does nothing: measures the system's own cost per task."""


@app.task(name="bench.sleep")
def sleep(ms: int) -> None:
    """Sleeps ``ms`` milliseconds: an I/O-bound task."""
    time.sleep(ms / 1000)


@app.task(name="bench.stamp")
def stamp(tag: str) -> None:
    """Records when it started (wall clock), for enqueue→start latency."""
    started = time.time()
    _stamps.rpush(STAMPS_KEY, f"{tag} {started!r}")
