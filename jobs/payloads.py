"""Base class for payload serializers: DRF validation that also refuses unknown fields.

:func:`payload_fast_path` validates the common, valid payload without DRF;
anything it is not certain about goes through the serializer, which gives
every error its usual message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

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

    A DRF serializer spent about 60 µs per payload (field lookups, validator
    objects, representation), the largest share of a bulk submission. For a
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
