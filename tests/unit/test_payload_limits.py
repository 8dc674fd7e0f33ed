"""What any payload may hold: a bounded depth, and text Postgres can store (jobs.payload_limits)."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from jobs.payload_limits import payload_problem, text_problem


def _lists(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_a_payload_far_deeper_than_the_recursion_limit_is_reported_without_recursing() -> None:
    payload = {"a": _lists(sys.getrecursionlimit() * 20)}

    problem = payload_problem(payload, max_depth=64)

    assert problem is not None
    path, message = problem
    assert path == ""
    assert "JOBS_MAX_PAYLOAD_DEPTH=64" in message


def test_the_payload_is_level_one_and_each_object_or_list_inside_adds_one() -> None:
    assert payload_problem({"a": _lists(2)}, max_depth=3) is None
    assert payload_problem({"a": _lists(3)}, max_depth=3) is not None
    assert payload_problem({"a": {"b": {}}}, max_depth=3) is None
    assert payload_problem({"a": {"b": {"c": 1}}}, max_depth=3) is None
    assert payload_problem({"a": {"b": {"c": {}}}}, max_depth=3) is not None
    assert payload_problem({"a": ((),)}, max_depth=2) is not None  # tuples are lists in JSON


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"message": "a\x00b"}, "message"),
        ({"a": [1, {"b": "\ud800"}]}, "a.1.b"),
        ({"a": ["ok", "\udfff"]}, "a.1"),
        ({"a\x00": 1}, ""),
        ({"a": {"\udc00": 1}}, "a"),
        ({"k" * 100: "\x00"}, "k" * 64 + "…"),
    ],
)
def test_nul_characters_and_lone_surrogates_are_reported_with_their_path(
    payload: dict[str, Any], path: str
) -> None:
    problem = payload_problem(payload, max_depth=64)

    assert problem is not None
    assert problem[0] == path


def test_a_bad_key_is_reported_as_a_key() -> None:
    problem = payload_problem({"a": {"\ud800": 1}}, max_depth=64)

    assert problem is not None
    assert problem[1].startswith("A key is refused: Lone surrogate characters (U+D800)")


def test_valid_text_numbers_and_non_bmp_characters_pass() -> None:
    payload = {
        "emoji": "😀 ünïcödé €",
        "n": [1, 2.5, None, True, 10**40],
        "nested": {"x": [{"y": "z"}]},
        7: "an int key, as Python callers may use",
    }

    assert payload_problem(payload, max_depth=64) is None


def test_text_problem_names_nul_characters_and_the_surrogate_found() -> None:
    assert text_problem("fine ✓") is None
    assert "\\u0000" in (text_problem("a\x00") or "")
    assert "U+DBFF" in (text_problem("é\udbff") or "")
