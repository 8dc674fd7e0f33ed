"""The job types: name → function, payload serializer, home queue and limits.

Modules declare job types with :func:`job_type` at import time, but no
Dramatiq actor exists until ``jobs.broker.bind`` runs from ``JobsConfig.ready()``
with the broker that ``jobs.broker`` built. That keeps the broker out of
import time, and lets every process (web, worker, scheduler) share one list.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from django.apps import apps
from django.utils.module_loading import module_has_submodule
from rest_framework import serializers

from jobs.conf import jobs_settings
from jobs.errors import PermanentJobError, UnknownJobType
from jobs.queues import QUEUES

logger = logging.getLogger(__name__)

#: Message option holding :meth:`JobType.payload_stamp` of the payload submission validated.
VALIDATED_OPTION = "payload_rules"

#: Submodule of every installed app that holds its job types.
ACTORS_MODULE = "actors"


@dataclass
class JobType:
    """A registered kind of job.

    Parameters:
      name: stable public name, also the Dramatiq actor name (``diagnostics.echo``).
      fn: the function run by the worker, called with the payload as keyword arguments.
      queue: home queue, one of ``jobs.queues.QUEUES``.
      payload_serializer: DRF serializer that validates and normalises the payload.
      public: whether API users may submit it (internal and periodic types are not).
      max_retries: retries after the first attempt; None means the JOBS_DEFAULT_* value.
      min_backoff_ms / max_backoff_ms: exponential backoff bounds between retries, in ms.
      time_limit_ms: hard limit of one attempt, in ms.
      soft_time_limit_ms: raises SoftTimeLimitExceeded inside the job, in ms.
      throws: exceptions that fail the job at once instead of retrying.
      rate_limit_per_minute: starts of this type per minute across all workers (an int,
        or a callable read at run time, e.g. from a setting); over it, jobs are deferred
        without using a retry. None means unlimited.
    """

    name: str
    fn: Callable[..., Any]
    queue: str
    payload_serializer: type[serializers.Serializer[Any]] | None = None
    description: str = ""
    public: bool = True
    max_retries: int | None = None
    min_backoff_ms: int | None = None
    max_backoff_ms: int | None = None
    time_limit_ms: int | None = None
    soft_time_limit_ms: int | None = None
    throws: tuple[type[BaseException], ...] = ()
    rate_limit_per_minute: int | Callable[[], int | None] | None = None
    actor: dramatiq.Actor[Any, Any] | None = field(default=None, repr=False)

    def effective_rate_limit_per_minute(self) -> int | None:
        limit = self.rate_limit_per_minute
        return limit() if callable(limit) else limit

    def effective_max_retries(self) -> int:
        return (
            self.max_retries if self.max_retries is not None else jobs_settings.default_max_retries
        )

    def payload_stamp(self, payload: Any, *, canonical_json: str | None = None) -> str | None:
        """A digest of this payload under this type's payload rules (None without a serializer).

        Submission stamps it on a message whose payload it validated
        (:data:`VALIDATED_OPTION`). The worker's argument validation trusts a
        stamp equal to the one it computes and validates anything else: a raw
        ``actor.send``, a message edited in Redis, one queued before a deploy
        changed the rules. Not a security boundary (whoever can write to Redis
        can run jobs), only a way to validate each payload once.
        ``canonical_json``: the payload already encoded as :data:`_canonical_json`
        does (submission's validation encodes it once, for its INSERT too).
        """
        if self.payload_serializer is None:
            return None
        rules = _fingerprints.get(self.payload_serializer)
        if rules is None:
            rules = _fingerprints[self.payload_serializer] = _serializer_digest(
                self.payload_serializer
            )
        encoded = canonical_json
        if encoded is None:
            try:
                encoded = _canonical_json(payload)
            except (TypeError, ValueError):
                return None
        return hashlib.blake2b(f"{rules}{encoded}".encode(), digest_size=12).hexdigest()

    def actor_options(self) -> dict[str, Any]:
        """Options of the Dramatiq actor, with the JOBS_DEFAULT_* settings filled in."""
        return {
            "max_retries": self.effective_max_retries(),
            "min_backoff": self.min_backoff_ms or jobs_settings.default_min_backoff_ms,
            "max_backoff": self.max_backoff_ms or jobs_settings.default_max_backoff_ms,
            "time_limit": self.time_limit_ms or jobs_settings.default_time_limit_ms,
            "soft_time_limit": self.soft_time_limit_ms or jobs_settings.default_soft_time_limit_ms,
            "max_age": jobs_settings.default_max_age_ms,
            "throws": (PermanentJobError, *self.throws),
        }


_registry: dict[str, JobType] = {}
_fingerprints: dict[type[Any], str] = {}

#: The encoding a payload stamp covers: compact, keys sorted (``canonical_json`` of
#: :meth:`JobType.payload_stamp` must be exactly this, or the stamp never matches).
_canonical_json = json.JSONEncoder(separators=(",", ":"), sort_keys=True, allow_nan=False).encode


def _serializer_digest(cls: type[serializers.Serializer[Any]]) -> str:
    """Digest of a serializer's declared fields and of its own source (validation methods)."""
    parts = [f"{cls.__module__}.{cls.__qualname__}"]
    for klass in cls.__mro__:
        if klass.__module__.startswith(("rest_framework.", "builtins")):
            continue
        try:
            parts.append(inspect.getsource(klass))
        except (OSError, TypeError):  # built at run time: its fields below still count
            parts.append(klass.__qualname__)
    # Field reprs name their arguments; a validator's memory address is not a rule.
    parts.append(re.sub(r" at 0x[0-9a-fA-F]+", "", repr(cls().fields)))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def job_type(
    name: str,
    *,
    queue: str,
    payload: type[serializers.Serializer[Any]] | None = None,
    description: str = "",
    public: bool = True,
    max_retries: int | None = None,
    min_backoff_ms: int | None = None,
    max_backoff_ms: int | None = None,
    time_limit_ms: int | None = None,
    soft_time_limit_ms: int | None = None,
    throws: tuple[type[BaseException], ...] = (),
    rate_limit_per_minute: int | Callable[[], int | None] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a job type. The decorated function runs on the worker.

    The function takes the validated payload as keyword arguments and returns
    a JSON-safe result. It is returned unchanged, so it stays callable in tests.
    """
    if queue not in QUEUES:
        raise ValueError(f"Job type {name!r} names unknown queue {queue!r}; use one of {QUEUES}.")

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        existing = _registry.get(name)
        if existing is not None and existing.fn is not fn:
            raise ValueError(f"Job type {name!r} is already registered by {existing.fn!r}.")
        _registry[name] = JobType(
            name=name,
            fn=fn,
            queue=queue,
            payload_serializer=payload,
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
            public=public,
            max_retries=max_retries,
            min_backoff_ms=min_backoff_ms,
            max_backoff_ms=max_backoff_ms,
            time_limit_ms=time_limit_ms,
            soft_time_limit_ms=soft_time_limit_ms,
            throws=throws,
            rate_limit_per_minute=rate_limit_per_minute,
        )
        return fn

    return decorator


def get_job_type(name: str) -> JobType:
    try:
        return _registry[name]
    except KeyError:
        # Only the public types: internal ones (django_tasks.run, periodic jobs) are not
        # for submitters to learn from an error message.
        public = ", ".join(jt.name for jt in all_job_types() if jt.public) or "none"
        raise UnknownJobType(
            f"Unknown job type {name!r}. Job types you can submit: {public}."
        ) from None


def unregister_job_type(name: str) -> None:
    """Forget a job type (tests, and the docs' examples run by them); unknown names are ignored.

    The broker keeps the actor bound to it until ``jobs.broker.bind`` runs again.
    """
    _registry.pop(name, None)


def all_job_types() -> list[JobType]:
    return sorted(_registry.values(), key=lambda jt: jt.name)


def autodiscover() -> None:
    """Import the ``actors`` module (or package, recursively) of every installed app."""
    for config in apps.get_app_configs():
        if not module_has_submodule(config.module, ACTORS_MODULE):
            continue
        module = importlib.import_module(f"{config.name}.{ACTORS_MODULE}")
        if hasattr(module, "__path__"):
            for info in pkgutil.walk_packages(module.__path__, prefix=module.__name__ + "."):
                importlib.import_module(info.name)
