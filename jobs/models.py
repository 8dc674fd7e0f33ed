from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Collate
from django.utils import timezone

from jobs.queues import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"  # in Redis (or delayed there), waiting for a worker
    RUNNING = "running", "Running"  # a worker is executing an attempt
    RETRYING = "retrying", "Retrying"  # an attempt failed; a retry is scheduled
    SUCCEEDED = "succeeded", "Succeeded"  # finished; the result is stored
    FAILED = "failed", "Failed"  # retries exhausted or a permanent error; dead-lettered
    CANCELLED = "cancelled", "Cancelled"  # stopped on request before it finished


#: Statuses a job can still leave without an explicit retry.
ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING)
FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class AttemptOutcome(models.TextChoices):
    SUCCEEDED = "succeeded", "Succeeded"  # the job returned normally
    FAILED = "failed", "Failed"  # the job raised
    LOST = "lost", "Lost"  # the worker died or the attempt was interrupted
    CANCELLED = "cancelled", "Cancelled"  # the job stopped at a checkpoint after a cancel
    TIMED_OUT = "timed_out", "Timed out"  # the soft or hard time limit fired


class Job(models.Model):
    """One unit of background work: the durable record of a Dramatiq message.

    The primary key is the Dramatiq message id. ``organization`` is null for
    system jobs (periodic and maintenance work).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: the (organization, …) indexes below lead with it, and
    # every index costs each claim and finish an entry (status changes are not HOT).
    organization = models.ForeignKey(
        "tenants.Organization",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="jobs",
        db_index=False,
    )
    job_type = models.CharField(max_length=200)
    queue = models.CharField(max_length=100)
    priority = models.PositiveSmallIntegerField(default=DEFAULT_PRIORITY)
    payload = models.JSONField(default=dict, blank=True)

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    max_retries = models.PositiveIntegerField(default=3)

    progress = models.PositiveSmallIntegerField(default=0)
    progress_message = models.CharField(max_length=500, blank=True, default="")
    result = models.JSONField(null=True, blank=True)
    error_type = models.CharField(max_length=200, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    error_traceback = models.TextField(blank=True, default="")

    idempotency_key = models.CharField(max_length=200, null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    dead_lettered_at = models.DateTimeField(null=True, blank=True)
    #: When the job's latest message was handed to Redis (retry, relay). Null on a queued
    #: row means the send has not happened yet: the outbox relay sends it. A submission
    #: sets it with the row (its creation time) and covers the send with a JobOutbox row.
    enqueued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False, organization__isnull=False),
                name="jobs_job_idempotency_per_org",
            ),
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=Q(idempotency_key__isnull=False, organization__isnull=True),
                name="jobs_job_idempotency_system",
            ),
            models.CheckConstraint(
                condition=Q(priority__gte=MIN_PRIORITY, priority__lte=MAX_PRIORITY),
                name="jobs_job_priority_range",
            ),
            models.CheckConstraint(
                condition=Q(progress__gte=0, progress__lte=100),
                name="jobs_job_progress_range",
            ),
            models.CheckConstraint(
                condition=Q(status__in=JobStatus.values),
                name="jobs_job_status_valid",
            ),
        ]
        indexes = [
            models.Index(
                fields=["organization", "status", "-created_at"], name="jobs_org_status_created"
            ),
            models.Index(fields=["organization", "-created_at"], name="jobs_org_created"),
            models.Index(fields=["status", "-created_at"], name="jobs_status_created"),
            models.Index(fields=["-created_at"], name="jobs_created"),
            models.Index(fields=["job_type", "-created_at"], name="jobs_type_created"),
            models.Index(
                fields=["created_at"],
                condition=Q(status="queued", enqueued_at__isnull=True),
                name="jobs_unsent",
            ),
            # The admin's queue filter.
            models.Index(fields=["queue", "-created_at"], name="jobs_queue_created"),
            # The dashboard's throughput and failure rate per minute over 24 hours.
            models.Index(
                fields=["finished_at", "status"],
                condition=Q(finished_at__isnull=False),
                name="jobs_finished_status",
            ),
            # The scheduler's latest run of a schedule (``last_run``, the dashboard): the
            # runs' key prefix is a range of it, compared byte by byte.
            models.Index(
                Collate("idempotency_key", "C"),
                condition=Q(organization__isnull=True, idempotency_key__isnull=False),
                name="jobs_system_key_c",
            ),
        ]
        permissions = [
            ("retry_job", "Can retry failed or cancelled jobs and replay dead letters"),
            ("cancel_job", "Can cancel queued, retrying or running jobs"),
            ("purge_dead_letters", "Can purge dead-lettered messages from Redis"),
        ]

    def __str__(self) -> str:
        return f"{self.job_type} {self.id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class JobAttempt(models.Model):
    """One delivery of a job's message to a worker.

    Parameters:
      number: 1 for the first delivery; redeliveries after a crash count too.
      worker_id: ``host:pid:broker-id`` of the worker process that ran it.
    """

    # Indexed by the (job, number) unique constraint, which leads with it.
    job = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="attempt_set", db_index=False
    )
    number = models.PositiveIntegerField()
    worker_id = models.CharField(max_length=200)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(
        max_length=16, choices=AttemptOutcome.choices, blank=True, default=""
    )
    error_type = models.CharField(max_length=200, blank=True, default="")
    error_message = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["job", "number"]
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="jobs_attempt_job_number"),
        ]
        indexes = [
            models.Index(
                fields=["worker_id"],
                condition=Q(finished_at__isnull=True),
                name="jobs_attempt_open_by_worker",
            ),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.job_id}"


class JobOutbox(models.Model):
    """The pending send of one submission call: written with its jobs, deleted once they are sent.

    One row per call (one job or a batch of a thousand), so recording that the
    messages reached Redis costs one small DELETE instead of an UPDATE of every
    job row. A row older than ``JOBS_OUTBOX_GRACE_MS`` means the process died
    or Redis failed between the commit and the send: the recovery loop sends
    those of its jobs that are still queued, then deletes it.

    Parameters:
      job_ids: the ids (strings) of the jobs whose messages the call sends.
    """

    job_ids = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["created_at"], name="jobs_outbox_created")]

    def __str__(self) -> str:
        return f"outbox {self.pk} ({len(self.job_ids)} jobs)"


class JobEventKind(models.TextChoices):
    CANCEL_REQUESTED = "cancel_requested", "Cancel requested"  # a running job was asked to stop
    CANCELLED = "cancelled", "Cancelled"  # cancelled before it ran
    RETRIED = "retried", "Retried"  # failed/cancelled job queued again with a fresh budget
    REPLAYED = "replayed", "Replayed"  # a dead letter replayed (a retry from the dead-letter view)
    PURGED = "purged", "Purged"  # its message was removed from Redis


class JobEvent(models.Model):
    """Audit trail: who did what to a job, through which channel, and when.

    Parameters:
      via: the channel (``api``, ``admin``, ``cli``, ``system``).
      user: the person, when there is one (API keys act as their member).
    """

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    organization = models.ForeignKey(
        "tenants.Organization", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=32, choices=JobEventKind.choices)
    via = models.CharField(max_length=32, default="system")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["job", "-created_at"], name="jobs_event_job_created")]

    def __str__(self) -> str:
        return f"{self.kind} {self.job_id} via {self.via}"


class DailyReport(models.Model):
    """One organization's job activity over one UTC day (``analytics.generate_daily_report``).

    Parameters:
      day: the UTC calendar day covered (jobs created from 00:00 to 24:00 UTC).
      by_status / by_type: job counts, ``{"succeeded": 12, ...}`` and ``{"email.send_transactional": 3}``.
      p50_duration_ms / p95_duration_ms: run time (start to finish) of the finished jobs, in ms.
      failure_rate: failed / (succeeded + failed), 0-1; null when none finished.
    """

    organization = models.ForeignKey(
        "tenants.Organization", on_delete=models.CASCADE, related_name="daily_reports"
    )
    day = models.DateField()
    total_jobs = models.PositiveIntegerField(default=0)
    by_status = models.JSONField(default=dict, blank=True)
    by_type = models.JSONField(default=dict, blank=True)
    p50_duration_ms = models.PositiveBigIntegerField(null=True, blank=True)
    p95_duration_ms = models.PositiveBigIntegerField(null=True, blank=True)
    failure_rate = models.FloatField(null=True, blank=True)
    generated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-day", "organization"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "day"], name="jobs_dailyreport_org_day"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization_id} on {self.day}"


class DeliveryStatus(models.TextChoices):
    SENDING = "sending", "Sending"  # claimed by an attempt; the provider call is in flight
    SENT = "sent", "Sent"  # the provider accepted it; never send again


class ProviderDelivery(models.Model):
    """A side effect a job made at an outside provider (an email, a Roblox message).

    Claimed before the provider call and completed with the provider's message
    id after it, so a redelivered job finds it and does not send twice.

    Parameters:
      channel: ``email`` or ``roblox``.
      provider: ``sendgrid``, ``smtp`` or ``roblox``.
      provider_message_id: the id the provider returned (SendGrid ``X-Message-Id``,
        the SMTP ``Message-ID``); empty when the provider returns none.
    """

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=32)
    provider = models.CharField(max_length=32, blank=True, default="")
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.SENDING
    )
    provider_message_id = models.CharField(max_length=300, blank=True, default="")
    attempt = models.PositiveIntegerField(default=0)
    claimed_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-claimed_at"]
        verbose_name_plural = "provider deliveries"
        constraints = [
            models.UniqueConstraint(fields=["job", "channel"], name="jobs_delivery_job_channel"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} of {self.job_id} ({self.status})"
