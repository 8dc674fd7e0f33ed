"""What the API answers, as typed values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

#: Statuses after which a job changes only by an explicit retry or replay.
FINISHED_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass(frozen=True)
class JobError:
    type: str
    message: str


@dataclass(frozen=True)
class Job:
    """A job as the API shows it (payload, result and error redacted by the server)."""

    id: str
    type: str
    status: str
    queue: str
    priority: int
    payload: dict[str, Any]
    attempts: int
    max_retries: int
    progress: int
    progress_message: str
    result: Any
    error: JobError | None
    created_at: datetime | None
    scheduled_for: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    url: str

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Job:
        error = data.get("error")
        return cls(
            id=str(data["id"]),
            type=str(data["type"]),
            status=str(data["status"]),
            queue=str(data.get("queue", "")),
            priority=int(data.get("priority", 0)),
            payload=dict(data.get("payload") or {}),
            attempts=int(data.get("attempts", 0)),
            max_retries=int(data.get("max_retries", 0)),
            progress=int(data.get("progress", 0)),
            progress_message=str(data.get("progress_message", "")),
            result=data.get("result"),
            error=JobError(type=str(error["type"]), message=str(error["message"]))
            if isinstance(error, dict)
            else None,
            created_at=_time(data.get("created_at")),
            scheduled_for=_time(data.get("scheduled_for")),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            url=str(data.get("url", "")),
        )


class JobRequest(TypedDict, total=False):
    """One job of :meth:`Client.submit_many`; only ``type`` is required."""

    type: str
    payload: dict[str, Any]
    priority: int
    idempotency_key: str
    delay_seconds: float


@dataclass(frozen=True)
class DeadLetterGroup:
    """Dead letters of one job type with one error type and one shape of message."""

    id: str
    type: str
    error_type: str
    message: str
    sample_message: str
    count: int
    first_failed_at: datetime | None
    last_failed_at: datetime | None
    still_in_redis: int | None
    url: str

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> DeadLetterGroup:
        in_redis = data.get("still_in_redis")
        return cls(
            id=str(data["id"]),
            type=str(data["type"]),
            error_type=str(data["error_type"]),
            message=str(data["message"]),
            sample_message=str(data.get("sample_message", "")),
            count=int(data["count"]),
            first_failed_at=_time(data.get("first_failed_at")),
            last_failed_at=_time(data.get("last_failed_at")),
            still_in_redis=None if in_redis is None else int(in_redis),
            url=str(data.get("url", "")),
        )


@dataclass(frozen=True)
class DeadLetterResult:
    """What a replay or purge did: jobs done, jobs skipped, Redis copies deleted."""

    action: str
    done: int
    skipped: int
    redis_removed: int
    job_ids: list[str] = field(default_factory=list)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> DeadLetterResult:
        return cls(
            action=str(data["action"]),
            done=int(data["done"]),
            skipped=int(data["skipped"]),
            redis_removed=int(data.get("redis_removed", 0)),
            job_ids=[str(i) for i in data.get("job_ids", [])],
        )
