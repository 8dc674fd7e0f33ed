"""Base class for payload serializers: DRF validation that also refuses unknown fields.

Two ways around DRF's per-call cost live here, fenced from the readable code
that calls them: :func:`payload_fast_path` validates the common, valid
payload without DRF (anything it is not certain about goes through the
serializer, which gives every error its usual message), and
:func:`bound_serializer` reuses one serializer instance per thread instead of
building a new one (with deep copies of every field) per call.
tests/unit/test_payload_fast_path.py holds both equal to plain DRF.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, cast

from django.core.validators import (
    MaxLengthValidator,
    MaxValueValidator,
    MinLengthValidator,
    MinValueValidator,
    ProhibitNullCharactersValidator,
)
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from jobs.conf import jobs_settings
from jobs.errors import InvalidPayload, PayloadTooLarge
from jobs.payload_limits import payload_problem
from jobs.registry import JobType


class PayloadSerializer(serializers.Serializer[dict[str, Any]]):
    """Validates a job payload. Unknown keys are errors, so typos are not silently ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown field; this job type does not take it."] for name in unknown}
                )
            # DRF's FloatField reads true as 1.0 and false as 0.0.
            booleans = {
                name: [field.error_messages["invalid"]]
                for name, field in self.fields.items()
                if isinstance(field, serializers.FloatField) and isinstance(data.get(name), bool)
            }
            if booleans:
                raise serializers.ValidationError(booleans)
        return super().to_internal_value(data)


#: Returns the payload as ``serializer.data`` would, or None: "ask the serializer".
FastPath = Callable[[Mapping[str, Any]], dict[str, Any] | None]
#: Returns a field's value as ``serializer.data`` holds it, or ``_UNSURE``.
_FieldCheck = Callable[[Any], Any]

_UNSURE = object()
_MAX_EXACT_INT = 2**53
_SURROGATE = re.compile("[\ud800-\udfff]")
_fast_paths: dict[type[serializers.Serializer[Any]], FastPath | None] = {}


def payload_fast_path(serializer_class: type[serializers.Serializer[Any]]) -> FastPath | None:
    """A validator equivalent to the serializer's ``is_valid()`` + ``data`` for valid payloads.

    A DRF serializer costs more per payload (field lookups, validator
    objects, representation) than the rest of a bulk submission's work
    (bench/HISTORY.md). For a
    :class:`PayloadSerializer` made only of plain ``CharField``,
    ``IntegerField``, ``FloatField`` and ``BooleanField`` fields (with their
    built-in length, range, null-character and surrogate validators, no
    ``validate*`` methods and no serializer-level validators), the returned
    function checks a payload directly and returns what ``serializer.data``
    would. It returns None whenever a value is not a plain valid one (a
    missing required field, a wrong type, anything out of range, an unknown
    key, a coercion DRF would do): the caller then runs the serializer, so
    every error, and every lenient coercion, is DRF's own. Returns None (no
    fast path) for any other serializer.
    """
    if serializer_class not in _fast_paths:
        _fast_paths[serializer_class] = _compile(serializer_class)
    return _fast_paths[serializer_class]


def _compile(cls: type[serializers.Serializer[Any]]) -> FastPath | None:
    if not issubclass(cls, PayloadSerializer):
        return None
    for name in ("to_internal_value", "run_validation", "validate", "run_validators"):
        if getattr(cls, name) is not getattr(
            PayloadSerializer if name == "to_internal_value" else serializers.Serializer, name
        ):
            return None
    instance = cls()
    if instance.validators:
        return None
    plan: list[tuple[str, _FieldCheck, bool, Any]] = []
    for name, field in instance.fields.items():
        if hasattr(cls, f"validate_{name}") or field.read_only or field.write_only:
            return None
        if field.source != name or field.allow_null:
            return None
        check = _field_check(field)
        if check is None:
            return None
        if field.default is empty:
            plan.append((name, check, field.required, empty))
        elif callable(field.default) or not isinstance(field.default, str | int | float | bool):
            return None
        else:
            plan.append((name, check, False, field.to_representation(field.default)))
    names = frozenset(name for name, *_ in plan)

    def fast_path(payload: Mapping[str, Any]) -> dict[str, Any] | None:
        if not names.issuperset(payload):
            return None
        out: dict[str, Any] = {}
        for name, check, required, default in plan:
            if name in payload:
                value = check(payload[name])
                if value is _UNSURE:
                    return None
                out[name] = value
            elif required:
                return None
            elif default is not empty:
                out[name] = default
        return out

    return fast_path


def _limits(field: serializers.Field[Any, Any, Any, Any]) -> dict[str, Any] | None:
    """The field's validators as limits; None if one is not a built-in we can mirror."""
    limits: dict[str, Any] = {}
    for validator in field.validators:
        kind = type(validator)
        if kind in (ProhibitNullCharactersValidator, ProhibitSurrogateCharactersValidator):
            continue
        if kind not in (
            MaxLengthValidator,
            MinLengthValidator,
            MaxValueValidator,
            MinValueValidator,
        ):
            return None
        limit = getattr(validator, "limit_value", None)
        if not isinstance(limit, int | float) or isinstance(limit, bool):
            return None
        name = kind.__name__
        if name in limits:  # the same bound twice (a field argument and a validator): the stricter
            strict = min if kind in (MaxLengthValidator, MaxValueValidator) else max
            limit = strict(limits[name], limit)
        limits[name] = limit
    return limits


def _field_check(field: serializers.Field[Any, Any, Any, Any]) -> _FieldCheck | None:
    limits = _limits(field)
    if limits is None:
        return None
    kind = type(field)
    if isinstance(field, serializers.CharField) and kind is serializers.CharField:
        return _char_check(field, limits)
    if kind is serializers.IntegerField or kind is serializers.FloatField:
        return _number_check(kind is serializers.FloatField, limits)
    if kind is serializers.BooleanField and not limits:
        return lambda value: value if type(value) is bool else _UNSURE
    return None


def _char_check(field: serializers.CharField, limits: dict[str, Any]) -> _FieldCheck:
    trim = field.trim_whitespace
    allow_blank = field.allow_blank
    max_length = limits.get("MaxLengthValidator")
    min_length = limits.get("MinLengthValidator")

    def check(value: Any) -> Any:
        if type(value) is not str:
            return _UNSURE
        if trim:
            value = value.strip()
        if value == "":
            # DRF returns a blank string before any validator runs.
            return "" if allow_blank else _UNSURE
        if max_length is not None and len(value) > max_length:
            return _UNSURE
        if min_length is not None and len(value) < min_length:
            return _UNSURE
        if "\x00" in value or (not value.isascii() and _SURROGATE.search(value)):
            return _UNSURE
        return value

    return check


def _number_check(is_float: bool, limits: dict[str, Any]) -> _FieldCheck:
    maximum = limits.get("MaxValueValidator")
    minimum = limits.get("MinValueValidator")

    def check(value: Any) -> Any:
        kind = type(value)
        if kind is int:
            if abs(value) > _MAX_EXACT_INT:  # DRF's str()/float() conversions may refuse it
                return _UNSURE
            if is_float:
                value = float(value)
        elif kind is not float or not is_float or not math.isfinite(value):
            return _UNSURE
        if maximum is not None and value > maximum:
            return _UNSURE
        if minimum is not None and value < minimum:
            return _UNSURE
        return value

    return check


_thread_serializers = threading.local()


def bound_serializer[S: serializers.Serializer[Any]](
    serializer_class: type[S],
    data: Any,
    *,
    cache: dict[Any, Any] | None = None,
    key: Any = None,
) -> S:
    """A ``serializer_class(data=data)``: new, or the cached instance of this class, reset.

    DRF deep-copies every declared field for each serializer instance, a large
    share of a submission's CPU (bench/HISTORY.md). The instance is reused
    within ``cache`` (one bulk call), or without it per thread (a serializer
    is never shared between threads); only what ``is_valid()`` and ``data``
    cache is per payload, and it is cleared here. ``key`` distinguishes
    instances of one class built differently (default: the class).
    """
    if cache is None:
        cache = cast(dict[Any, Any], _thread_serializers.__dict__)
    cache_key = serializer_class if key is None else key
    serializer: S | None = cache.get(cache_key)
    if serializer is None:
        serializer = cache[cache_key] = serializer_class(data=data)
        return serializer
    serializer.initial_data = data
    for attr in ("_validated_data", "_errors", "_data"):
        serializer.__dict__.pop(attr, None)
    return serializer


def validate_payload(
    jt: JobType, payload: Any, *, serializers: dict[Any, Any] | None = None
) -> dict[str, Any]:
    """Check a payload's shape, size and fields; return it normalised by the type's serializer.

    ``serializers`` lets one call validate many payloads with one serializer
    instance per job type (see :func:`jobs.payloads.bound_serializer`).
    """
    return validate_payload_json(jt, payload, serializers=serializers)[0]


#: One encoder each, built once: ``json.dumps`` with options builds a new encoder per call.
_encode_strict = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
#: Keys sorted: the text a payload's stamp covers (JobType.payload_stamp), encoded once.
_encode = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


def validate_payload_json(
    jt: JobType, payload: Any, *, serializers: dict[Any, Any] | None = None
) -> tuple[dict[str, Any], str]:
    """:func:`validate_payload`, also returning the normalised payload as compact JSON."""
    if type(payload) is not dict and not isinstance(payload, Mapping):
        raise InvalidPayload(
            f"The payload must be a JSON object, not {type(payload).__name__}.",
            errors={"payload": ["Expected a JSON object."]},
        )
    # Before anything that recurses (encoding, the serializer): a deep payload is refused here.
    problem = payload_problem(payload, max_depth=jobs_settings.max_payload_depth)
    if problem is not None:
        path, message = problem
        raise InvalidPayload(
            f"The payload is invalid at {'payload.' + path if path else 'payload'}: {message}",
            errors={path or "payload": [message]},
        )
    try:
        encoded = _encode_strict(payload)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(
            f"The payload cannot be encoded as JSON ({exc}). "
            "Send only objects, lists, strings, numbers, booleans and null.",
            errors={"payload": [f"Not JSON-serialisable: {exc}"]},
        ) from None
    limit = jobs_settings.max_payload_bytes
    check_payload_size(encoded, limit)
    if jt.payload_serializer is None:
        return dict(payload), encoded
    fast_path = payload_fast_path(jt.payload_serializer)
    normalised = fast_path(payload) if fast_path is not None else None
    if normalised is None:
        assert jt.payload_serializer is not None
        serializer = bound_serializer(jt.payload_serializer, dict(payload), cache=serializers)
        if not serializer.is_valid():
            fields = ", ".join(sorted(serializer.errors))
            raise InvalidPayload(
                f"The payload of {jt.name!r} is invalid in: {fields}.", errors=serializer.errors
            )
        normalised = dict(serializer.data)
    encoded = _encode(normalised)
    check_payload_size(encoded, limit)
    return normalised, encoded


def check_payload_size(encoded: str, limit: int) -> None:
    # Compact JSON escapes every non-ASCII character, so its length is its size in bytes.
    size = len(encoded) if encoded.isascii() else len(encoded.encode())
    if size > limit:
        raise PayloadTooLarge(
            f"The payload is {size} bytes, over JOBS_MAX_PAYLOAD_BYTES={limit}. "
            "Pass a reference (an id or a URL) to large data instead of the data itself.",
            errors={"payload": [f"Payload is {size} bytes; the limit is {limit}."]},
        )
