"""Dead-letters a message whose arguments its job type refuses, before the ledger claims it."""

from __future__ import annotations

import inspect
import logging
import threading
from typing import Any

import dramatiq
from django.db import DatabaseError
from dramatiq.middleware import Middleware, SkipMessage

from jobs.errors import InvalidPayload, UnknownJobType
from jobs.registry import VALIDATED_OPTION, get_job_type
from jobs.services.ledger_writer import release_claims_ahead
from jobs.services.recovery_ledger import job_dead_letter
from jobs.services.submission import validate_payload

logger = logging.getLogger(__name__)

#: ``error_type`` recorded on a job whose message carried arguments it cannot run with.
INVALID_ARGUMENTS = "InvalidArguments"


class ArgumentValidation(Middleware):
    """Checks a message's arguments against its job type; a bad one never runs.

    A payload stamped at submission (:data:`VALIDATED_OPTION`) with the stamp
    this worker computes for it is not checked again: checking every payload
    twice was a large share of a short job's CPU (bench/HISTORY.md).

    Retrying a message whose arguments are wrong only fails again, so it is
    dead-lettered at once (``message.fail()`` + ``SkipMessage``), its job is
    failed with ``InvalidArguments``, and one error is logged. Messages of
    actors that are not job types are left alone.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        try:
            jt = get_job_type(message.actor_name)
        except UnknownJobType:
            return
        stamp = message.options.get(VALIDATED_OPTION)
        if stamp is not None and not message.args and stamp == jt.payload_stamp(message.kwargs):
            return  # this very payload passed these very rules at submission
        # One serializer per job type and worker thread: building a DRF serializer
        # deep-copies its fields every time.
        serializers = getattr(self._local, "serializers", None)
        if serializers is None:
            serializers = self._local.serializers = {}
        problem = _problem(jt, message.args, message.kwargs, serializers)
        if problem is None:
            return
        release_claims_ahead([message])  # the row must be waiting to be dead-lettered

        logger.error(
            "Dead-lettered message %s of %s: %s. It stays in the dead-letter set.",
            message.message_id,
            message.actor_name,
            problem,
        )
        try:
            job_dead_letter(
                job_id=message.message_id,
                error_type=INVALID_ARGUMENTS,
                error_message=f"The message's arguments are invalid: {problem}.",
            )
        except DatabaseError:
            logger.warning("Could not record the dead letter of job %s.", message.message_id)
        message.fail()
        raise SkipMessage("invalid arguments")


def _problem(
    jt: Any, args: Any, kwargs: Any, serializers: dict[str, Any] | None = None
) -> str | None:
    if args:
        return f"job types take keyword arguments only, got {len(args)} positional"
    if not isinstance(kwargs, dict):
        return f"the keyword arguments are a {type(kwargs).__name__}, not an object"
    if jt.payload_serializer is not None:
        try:
            validate_payload(jt, kwargs, serializers=serializers)
        except InvalidPayload as exc:
            return str(exc)
        return None
    try:
        inspect.signature(jt.fn).bind(**kwargs)
    except TypeError as exc:
        return str(exc)
    return None
