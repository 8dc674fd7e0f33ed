"""What a payload may hold besides its job type's fields: a bounded depth, and text Postgres stores.

Every submission checks this first (``jobs.services.submission``), before
anything recursive touches the payload: DRF, the JSON encoder, redaction and
rendering each recurse once or more per level of nesting, and a payload a few
hundred levels deep raised ``RecursionError``. The walk here is iterative.

Postgres's ``jsonb`` cannot store a NUL character (``\\u0000``) nor a lone
surrogate (``\\ud800``: half of a UTF-16 pair, not a Unicode character); both
are refused here, in keys and in values, naming where they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_CONTAINERS = (dict, list, tuple)
_SURROGATE = re.compile("[\ud800-\udfff]")
#: A key longer than this is shortened in the path an error names.
_PATH_PART_CHARS = 64


def text_problem(text: str) -> str | None:
    """Why Postgres cannot store ``text``, or None when it can."""
    if "\x00" in text:
        return "Null characters (\\u0000) are not allowed: Postgres cannot store them."
    if not text.isascii():
        try:
            text.encode()  # cheaper than a regex search for surrogates (bench/HISTORY.md)
        except UnicodeEncodeError:
            match = _SURROGATE.search(text)
            code = f"U+{ord(match.group()):04X}" if match is not None else "a surrogate"
            return (
                f"Lone surrogate characters ({code}) are not allowed: they are not "
                "Unicode text. Send text encoded as UTF-8."
            )
    return None


def depth_problem(max_depth: int) -> str:
    """The message of a payload nested deeper than ``max_depth`` levels."""
    return (
        f"Nested more than {max_depth} levels deep (objects and lists); the limit is "
        f"JOBS_MAX_PAYLOAD_DEPTH={max_depth}. Flatten the data, or pass a reference to it."
    )


def payload_problem(payload: Any, *, max_depth: int) -> tuple[str, str] | None:
    """The first thing in ``payload`` that may not be stored, as ``(path, message)``; or None.

    ``path`` is the dotted path of the offending value inside the payload
    (``"items.3.name"``; a bad key is reported at the object holding it),
    ``""`` for the payload itself. The payload is one level; each object or
    list inside adds one. Objects are mappings, lists are ``list``s and
    ``tuple``s (what the JSON encoder walks); anything else is left to it.
    """
    stack: list[tuple[Any, tuple[Any, ...]]] = [(payload, ())]
    while stack:
        container, path = stack.pop()
        if len(path) >= max_depth:
            return "", depth_problem(max_depth)
        if type(container) is dict or isinstance(container, Mapping):
            for key, value in container.items():
                # The cheap test first: text_problem() only for text that may hold a problem.
                if (
                    isinstance(key, str)
                    and ("\x00" in key or not key.isascii())
                    and (problem := text_problem(key)) is not None
                ):
                    return _dotted(path), f"A key is refused: {problem}"
                if isinstance(value, str):
                    if ("\x00" in value or not value.isascii()) and (
                        problem := text_problem(value)
                    ) is not None:
                        return _dotted((*path, key)), problem
                elif isinstance(value, _CONTAINERS):
                    stack.append((value, (*path, key)))
        else:
            for index, value in enumerate(container):
                if isinstance(value, str):
                    if ("\x00" in value or not value.isascii()) and (
                        problem := text_problem(value)
                    ) is not None:
                        return _dotted((*path, index)), problem
                elif isinstance(value, _CONTAINERS):
                    stack.append((value, (*path, index)))
    return None


def _dotted(path: tuple[Any, ...]) -> str:
    parts = (str(part) for part in path)
    return ".".join(
        part if len(part) <= _PATH_PART_CHARS else part[:_PATH_PART_CHARS] + "…" for part in parts
    )
