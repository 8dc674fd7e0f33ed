"""``/healthz`` (the process answers) and ``/readyz`` (Postgres and Redis answer)."""

from __future__ import annotations

import logging

import redis
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from jobs.conf import jobs_settings
from jobs.transport.broker import broker_ping

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: answers 200 whenever the process can serve a request; checks nothing else."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when Postgres and Redis both answer, else 503 naming the one down."""
    checks = {"postgres": _check_postgres(), "redis": _check_redis()}
    ready = all(value == "ok" for value in checks.values())
    response = JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )
    if not ready:
        response["Retry-After"] = str(jobs_settings.api_unavailable_retry_after_seconds)
    return response


def _check_postgres() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("Readiness: the database is unavailable (%s).", exc)
        return f"unavailable ({type(exc).__name__})"
    return "ok"


def _check_redis() -> str:
    try:
        broker_ping()
    except redis.RedisError as exc:
        logger.warning("Readiness: Redis is unavailable (%s).", exc)
        return f"unavailable ({type(exc).__name__})"
    return "ok"
