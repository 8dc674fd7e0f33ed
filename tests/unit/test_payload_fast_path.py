"""The payload fast path returns exactly what DRF's serializer does, or hands the payload to it."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from jobs.errors import InvalidPayload
from jobs.payload_limits import payload_problem
from jobs.payloads import PayloadSerializer, payload_fast_path
from jobs.registry import all_job_types, get_job_type
from jobs.services import validate_payload


class Mixed(PayloadSerializer):
    name = serializers.CharField(max_length=5, min_length=2)
    note = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    count = serializers.IntegerField(min_value=-3, max_value=10, default=1)
    ratio = serializers.FloatField(min_value=0, max_value=2.5, required=False)
    flag = serializers.BooleanField(default=False)


class WithFieldValidator(PayloadSerializer):
    name = serializers.CharField()

    def validate_name(self, value: str) -> str:
        return value.upper()


class WithValidate(PayloadSerializer):
    name = serializers.CharField()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return attrs


class WithOtherField(PayloadSerializer):
    when = serializers.DateField()


#: Values DRF treats in every way: valid, coerced, blank, out of range, wrong type.
_VALUES = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", "  ", " ab ", "ab\x00", "a\ud800b", "é\u212a", "ab", "abcdef"]),
    st.integers(min_value=-5, max_value=12),
    st.sampled_from([2**53, 2**53 + 1, -(2**60), 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 2.5, 2.6, 10.0, 1.5]),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
_PAYLOADS = st.dictionaries(
    st.sampled_from(["name", "note", "count", "ratio", "flag", "other"]), _VALUES, max_size=6
)


def _drf(serializer_class: type[serializers.Serializer[Any]], payload: dict[str, Any]) -> Any:
    serializer = serializer_class(data=dict(payload))
    return dict(serializer.data) if serializer.is_valid() else None


@settings(max_examples=400, deadline=None)
@given(_PAYLOADS)
def test_the_fast_path_agrees_with_the_serializer_or_defers_to_it(payload: dict[str, Any]) -> None:
    fast_path = payload_fast_path(Mixed)
    assert fast_path is not None
    fast = fast_path(payload)
    if fast is not None:
        expected = _drf(Mixed, payload)
        assert expected is not None, f"accepted {payload!r}, which DRF refuses"
        assert list(fast) == list(expected)
        for name, value in expected.items():
            assert type(fast[name]) is type(value)
            assert fast[name] == value or (math.isnan(value) and math.isnan(fast[name]))


def test_plain_valid_payloads_take_the_fast_path_with_defaults_filled_in() -> None:
    fast_path = payload_fast_path(Mixed)
    assert fast_path is not None
    assert fast_path({"name": " abc ", "ratio": 2}) == _drf(Mixed, {"name": " abc ", "ratio": 2})
    assert fast_path({"name": " abc ", "ratio": 2}) == {
        "name": "abc",
        "count": 1,
        "ratio": 2.0,
        "flag": False,
    }


@pytest.mark.parametrize("serializer_class", [WithFieldValidator, WithValidate, WithOtherField])
def test_serializers_with_their_own_validation_or_other_fields_have_no_fast_path(
    serializer_class: type[PayloadSerializer],
) -> None:
    assert payload_fast_path(serializer_class) is None


@settings(max_examples=200, deadline=None)
@given(_PAYLOADS)
def test_every_registered_job_type_validates_as_its_serializer_does(
    payload: dict[str, Any],
) -> None:
    try:
        json.dumps(payload, allow_nan=False)
    except ValueError:
        assume(False)  # refused before any serializer sees it
    # NUL characters and lone surrogates too (jobs.payload_limits).
    assume(payload_problem(payload, max_depth=64) is None)
    for jt in all_job_types():
        if jt.payload_serializer is None:
            continue
        serializer = jt.payload_serializer(data=dict(payload))
        if serializer.is_valid():
            assert validate_payload(jt, payload) == dict(serializer.data)
        else:
            with pytest.raises(InvalidPayload) as info:
                validate_payload(jt, payload)
            assert info.value.errors == serializer.errors


def test_the_echo_payload_takes_the_fast_path() -> None:
    assert payload_fast_path(get_job_type("diagnostics.echo").payload_serializer) is not None  # type: ignore[arg-type]


def test_an_invalid_payload_still_gets_drf_errors_naming_the_field() -> None:
    jt = get_job_type("diagnostics.echo")
    with pytest.raises(InvalidPayload) as info:
        validate_payload(jt, {"message": "x", "fail_times": 11})
    assert info.value.errors == {"fail_times": ["Ensure this value is less than or equal to 10."]}
