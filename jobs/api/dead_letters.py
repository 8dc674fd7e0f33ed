"""``/api/v1/dead-letters/``: dead letters grouped, a group's jobs, replay and purge.

Organization-scoped like the jobs endpoints: a group id is the same for every
organization with such failures, but each sees only its own jobs in it, and
a group with none of them answers 404 exactly like an unknown id. Replay
needs the ``dead_letters:write`` scope and costs one submission per job
replayed (rate limit and monthly quota); purge needs the same scope.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from jobs.api.pagination import JobPagination
from jobs.api.schema import PAGE_PARAMETERS
from jobs.api.serializers import JobSerializer
from jobs.errors import DeadLetterGroupNotFound
from jobs.redaction import redact_text
from jobs.selectors.dead_letters import (
    DeadLetterGroup,
    dead_letter_group,
    dead_letter_group_jobs,
    dead_letter_groups,
)
from jobs.services.dead_letters import (
    DeadLetterResult,
    dead_letter_group_purge,
    dead_letter_group_replay,
)
from tenants.api.authentication import request_api_key_label, request_organization
from tenants.models import ApiScope, Organization

VIA = "api"
#: Most job ids one replay or purge request may name.
MAX_JOB_IDS = 1000

GROUP_ID = OpenApiParameter(
    "group_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="A group's `id` from GET /api/v1/dead-letters/ (16 hex digits).",
)
_GROUP_ID = re.compile(r"[0-9a-f]{16}")


class DeadLetterGroupSerializer(serializers.Serializer[DeadLetterGroup]):
    """Dead letters of one job type with one error type and one shape of error message."""

    id = serializers.CharField(source="key", help_text="Stable id of the group.")
    type = serializers.CharField(source="job_type")
    error_type = serializers.CharField()
    message = serializers.SerializerMethodField(
        help_text="The error message's shape: ids, hex and numbers blanked out."
    )
    sample_message = serializers.SerializerMethodField(help_text="One real error message.")
    count = serializers.IntegerField(help_text="Dead letters in the group.")
    first_failed_at = serializers.DateTimeField(allow_null=True)
    last_failed_at = serializers.DateTimeField(allow_null=True)
    still_in_redis = serializers.IntegerField(
        source="in_redis",
        help_text="How many of their messages Redis still keeps dead-lettered "
        "(it drops them after JOBS_DEAD_MESSAGE_TTL_MS; the ledger keeps the jobs).",
    )
    url = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.STR)
    def get_message(self, group: DeadLetterGroup) -> str:
        return redact_text(group.message)

    @extend_schema_field(OpenApiTypes.STR)
    def get_sample_message(self, group: DeadLetterGroup) -> str:
        return redact_text(group.sample_message)

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, group: DeadLetterGroup) -> str:
        return reverse(
            "api:dead-letter-group",
            kwargs={"group_id": group.key},
            request=self.context.get("request"),
        )


class DeadLetterGroupListSerializer(serializers.Serializer[Any]):
    results = DeadLetterGroupSerializer(many=True)


class DeadLetterGroupPageSerializer(serializers.Serializer[Any]):
    """A group, and one page of its jobs (most recently dead-lettered first)."""

    group = DeadLetterGroupSerializer()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = JobSerializer(many=True)


class DeadLetterFilterSerializer(serializers.Serializer[Any]):
    type = serializers.CharField(required=False, max_length=200, help_text="Only this job type.")


class DeadLetterActionSerializer(serializers.Serializer[Any]):
    job_ids = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        allow_null=True,
        min_length=1,
        max_length=MAX_JOB_IDS,
        help_text="Only these jobs of the group (omit for the whole group). Ids outside "
        "the group count as skipped.",
    )


class DeadLetterResultSerializer(serializers.Serializer[Any]):
    action = serializers.ChoiceField(choices=["replay", "purge"])
    done = serializers.IntegerField(help_text="Jobs replayed (or purged).")
    skipped = serializers.IntegerField(
        help_text="Jobs asked for that were not (or no longer) dead letters of the group."
    )
    redis_removed = serializers.IntegerField(
        help_text="Dead-lettered copies of their messages deleted from Redis."
    )
    job_ids = serializers.ListField(child=serializers.UUIDField(), help_text="The jobs done.")


class DeadLetterPagination(JobPagination):
    ordering = ("-dead_lettered_at", "-id")


def _scope(request: Request) -> QuerySet[Organization]:
    return Organization.objects.filter(pk=request_organization(request).pk)


def _group(request: Request, group_id: str, *, count_in_redis: bool = False) -> DeadLetterGroup:
    group = None
    if _GROUP_ID.fullmatch(group_id):
        group = dead_letter_group(
            key=group_id, organizations=_scope(request), count_in_redis=count_in_redis
        )
    if group is None:
        raise DeadLetterGroupNotFound(
            "No dead-letter group with this id in your organization; "
            "GET /api/v1/dead-letters/ lists them."
        )
    return group


def _audit(request: Request) -> dict[str, Any]:
    label = request_api_key_label(request)
    return {"api_key": label} if label else {}


def _user(request: Request) -> Any:
    return request.user if request.user.is_authenticated else None


def _result(action: str, result: DeadLetterResult) -> Response:
    body = {
        "action": action,
        "done": result.done,
        "skipped": result.skipped,
        "redis_removed": result.redis_removed,
        "job_ids": result.job_ids,
    }
    return Response(DeadLetterResultSerializer(body).data)


def _job_ids(request: Request) -> list[str] | None:
    serializer = DeadLetterActionSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    ids = serializer.validated_data.get("job_ids")
    return None if ids is None else [str(i) for i in ids]


class DeadLetterGroupListView(APIView):
    """The organization's dead letters, grouped; largest group first."""

    @extend_schema(
        parameters=[DeadLetterFilterSerializer],
        responses=DeadLetterGroupListSerializer,
        operation_id="dead_letters_list",
    )
    def get(self, request: Request) -> Response:
        filters = DeadLetterFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        groups = dead_letter_groups(
            organizations=_scope(request),
            count_in_redis=True,
            job_type=filters.validated_data.get("type"),
        )
        data = DeadLetterGroupSerializer(groups, many=True, context={"request": request}).data  # type: ignore[arg-type]
        return Response({"results": data})


class DeadLetterGroupDetailView(APIView):
    """A group and its jobs, most recently dead-lettered first, a page at a time."""

    @extend_schema(
        parameters=[GROUP_ID, *PAGE_PARAMETERS],
        responses=DeadLetterGroupPageSerializer,
        operation_id="dead_letters_retrieve",
    )
    def get(self, request: Request, group_id: str) -> Response:
        group = _group(request, group_id, count_in_redis=True)
        jobs = dead_letter_group_jobs(group=group, organizations=_scope(request))
        paginator = DeadLetterPagination()
        page = paginator.paginate_queryset(jobs, request, view=self)
        return Response(
            {
                "group": DeadLetterGroupSerializer(group, context={"request": request}).data,
                "next": paginator.get_next_link(),
                "previous": paginator.get_previous_link(),
                "results": JobSerializer(page, many=True, context={"request": request}).data,  # type: ignore[arg-type]
            }
        )


def _action_schema(operation_id: str) -> Any:
    return extend_schema(
        parameters=[GROUP_ID],
        request=DeadLetterActionSerializer,
        responses=DeadLetterResultSerializer,
        operation_id=operation_id,
    )


class _DeadLetterActionView(APIView):
    """A write on a group's jobs (or ``job_ids`` among them): ``service`` does it.

    ``service`` is called with the group, the organization scope, the ids, and
    who asked (user, channel, audit); its result is answered as ``action``.
    """

    required_scopes = {"POST": ApiScope.DEAD_LETTERS_WRITE.value}
    action: ClassVar[str]
    service: ClassVar[Callable[..., DeadLetterResult]]

    def post(self, request: Request, group_id: str) -> Response:
        group = _group(request, group_id)
        result = self.service(
            group=group,
            organizations=_scope(request),
            job_ids=_job_ids(request),
            user=_user(request),
            via=VIA,
            audit=_audit(request),
        )
        return _result(self.action, result)


@extend_schema_view(post=_action_schema("dead_letters_replay"))
class DeadLetterReplayView(_DeadLetterActionView):
    """Queue the group's jobs (or ``job_ids`` among them) again with a fresh retry budget.

    Each job replayed costs one submission: the rate limit and the monthly
    quota are checked for all of them first (429 and nothing replayed).
    """

    action = "replay"
    service = staticmethod(partial(dead_letter_group_replay, enforce_limits=True))


@extend_schema_view(post=_action_schema("dead_letters_purge"))
class DeadLetterPurgeView(_DeadLetterActionView):
    """Take the group's jobs (or ``job_ids`` among them) off the dead-letter list.

    Their rows stay ``failed`` with their error; Redis's copies of their messages are deleted.
    """

    action = "purge"
    service = staticmethod(dead_letter_group_purge)
