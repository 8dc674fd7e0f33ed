"""Side effects at outside providers, made at most once per job.

A job that emails or publishes claims a :class:`ProviderDelivery` row before
calling the provider and records the provider's message id after. A
redelivered job (a retry after a crash, a duplicate message) finds the row
``sent`` and returns what was recorded instead of sending again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from jobs.errors import PermanentJobError
from jobs.models import DeliveryStatus, JobEvent, JobEventKind, ProviderDelivery

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryResult:
    """What a delivery did: the provider, its message id, and whether this call sent it."""

    provider: str
    provider_message_id: str
    sent_now: bool


def delivery_send_once(
    *,
    job_id: str,
    channel: str,
    provider: str,
    attempt: int,
    send: Callable[[], str],
) -> DeliveryResult:
    """Call ``send()`` (which returns the provider's message id) unless this job already did.

    Any exception from ``send`` means the provider did not accept it: the claim
    is released and the exception propagates (the job retries or fails). If an
    earlier attempt was interrupted during the call (its claim is still
    ``sending``), the outcome is unknown and the job fails rather than risk a
    duplicate; an explicit retry of the job (an audited decision) sends again.
    """
    with transaction.atomic():
        delivery, created = ProviderDelivery.objects.select_for_update().get_or_create(
            job_id=job_id, channel=channel, defaults={"provider": provider, "attempt": attempt}
        )
        if not created:
            if delivery.status == DeliveryStatus.SENT:
                logger.info(
                    "Job %s already sent its %s (message id %s); not sending again.",
                    job_id,
                    channel,
                    delivery.provider_message_id or "-",
                )
                return DeliveryResult(delivery.provider, delivery.provider_message_id, False)
            if not _retried_since(job_id, delivery):
                raise PermanentJobError(
                    f"Attempt {delivery.attempt} of this job was interrupted while sending its "
                    f"{channel} through {delivery.provider}, so it may have been delivered. Not "
                    "sending again, to avoid a duplicate. Check the recipient, then retry the job "
                    "explicitly (admin, API or CLI) to send it anyway."
                )
            delivery.provider = provider
            delivery.attempt = attempt
            delivery.claimed_at = timezone.now()
            delivery.save(update_fields=["provider", "attempt", "claimed_at"])
    try:
        message_id = send()
    except BaseException:
        ProviderDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SENDING).delete()
        raise
    ProviderDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.SENT,
        provider_message_id=message_id[:300],
        sent_at=timezone.now(),
    )
    return DeliveryResult(provider, message_id, True)


def _retried_since(job_id: str, delivery: ProviderDelivery) -> bool:
    return JobEvent.objects.filter(
        job_id=job_id,
        kind__in=[JobEventKind.RETRIED, JobEventKind.REPLAYED],
        created_at__gt=delivery.claimed_at,
    ).exists()
