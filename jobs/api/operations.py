"""``/api/v1/queues/`` and ``/api/v1/workers/``: what an operator automates with.

An organization's key sees its own share of each queue (from its ledger
rows); a key with the ``ops`` scope, or a superuser's session, sees the
totals (from Redis). The workers are for ``ops`` only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.selectors.queue_overview import queue_overview, worker_overview
from tenants.api.authentication import request_organization, request_scopes
from tenants.models import ApiScope


class QueueSerializer(serializers.Serializer[Any]):
    queue = serializers.CharField()
    ready = serializers.IntegerField(help_text="Waiting for a worker now.")
    delayed = serializers.IntegerField(
        help_text="Waiting for a time: a delayed job's scheduled_for, or a retry's backoff."
    )
    in_flight = serializers.IntegerField(
        help_text="Running (an organization's view), or fetched by a worker and not yet "
        "acknowledged (the totals)."
    )
    dead_lettered = serializers.IntegerField(help_text="Dead letters in the ledger.")
    oldest_waiting_seconds = serializers.FloatField(
        allow_null=True, help_text="How long the oldest ready job has waited; null when none."
    )
    throughput_last_minute = serializers.IntegerField(
        source="finished_last_minute", help_text="Jobs that succeeded or failed in the last minute."
    )
    throughput_last_hour = serializers.IntegerField(
        source="finished_last_hour", help_text="Jobs that succeeded or failed in the last hour."
    )


class QueueListSerializer(serializers.Serializer[Any]):
    scope = serializers.ChoiceField(
        choices=["organization", "all"],
        help_text="`organization`: the key's organization's jobs only; `all`: every "
        "organization's (an `ops` key or a superuser's session).",
    )
    organization = serializers.CharField(
        allow_null=True, help_text="The organization's slug; null for the totals."
    )
    results = QueueSerializer(many=True)


class WorkerSerializer(serializers.Serializer[Any]):
    id = serializers.CharField(help_text="The worker process's broker id.")
    host = serializers.CharField()
    pid = serializers.IntegerField()
    threads = serializers.IntegerField()
    queues = serializers.ListField(child=serializers.CharField())
    started_at = serializers.DateTimeField()
    last_heartbeat = serializers.DateTimeField()
    seconds_since_heartbeat = serializers.FloatField()
    jobs_in_flight = serializers.IntegerField(help_text="Jobs it is running now.")


class WorkerListSerializer(serializers.Serializer[Any]):
    results = WorkerSerializer(many=True)


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


class QueueListView(APIView):
    """Each queue's backlog and throughput: the organization's, or (``ops``) everyone's."""

    # Either scope will do: an ops key needs no jobs:read to watch the queues.
    required_scopes = {"GET": (ApiScope.JOBS_READ.value, ApiScope.OPS.value)}

    @extend_schema(responses=QueueListSerializer, operation_id="queues_list")
    def get(self, request: Request) -> Response:
        organization = request_organization(request)
        totals = ApiScope.OPS.value in request_scopes(request)
        rows = queue_overview(organization=None if totals else organization)
        body = {
            "scope": "all" if totals else "organization",
            "organization": None if totals else organization.slug,
            "results": QueueSerializer(rows, many=True).data,
        }
        return Response(body)


class WorkerListView(APIView):
    """Worker processes that heartbeat, with what each runs now (``ops`` scope only)."""

    required_scopes = {"GET": ApiScope.OPS.value}

    @extend_schema(responses=WorkerListSerializer, operation_id="workers_list")
    def get(self, request: Request) -> Response:
        rows = [
            {
                "id": w.info.broker_id,
                "host": w.info.host,
                "pid": w.info.pid,
                "threads": w.info.threads,
                "queues": w.info.queues,
                "started_at": _at(w.info.started_at),
                "last_heartbeat": _at(w.info.last_seen),
                "seconds_since_heartbeat": round(w.info.seconds_since_seen, 3),
                "jobs_in_flight": w.jobs_in_flight,
            }
            for w in worker_overview()
        ]
        return Response({"results": WorkerSerializer(rows, many=True).data})
