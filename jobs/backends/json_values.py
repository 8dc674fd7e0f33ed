"""What JSON cannot hold whole, beyond what ``django.utils.json.normalize_json`` refuses.

``normalize_json`` keeps a dict's non-string keys and non-finite floats. The
ledger stores JSON, which turns ``{1: "a"}`` into ``{"1": "a"}`` and has no
``NaN`` or ``Infinity``, so a task would run with (or return) something other
than what it was given. Both are refused instead, as ``TypeError``.
"""

from __future__ import annotations

import json
import math
from collections import deque
from typing import Any


def json_value_problem(value: Any, *, name: str = "") -> str | None:
    """Why ``value`` (already normalized) would not survive a JSON round trip, or None.

    ``name`` starts the path shown to the bad part (``kwargs['data'][0]``). Walks
    without recursion, so a deeply nested value costs no stack.
    """
    pending: deque[tuple[Any, str]] = deque([(value, name)])
    while pending:
        node, where = pending.popleft()
        if isinstance(node, dict):
            for key, item in node.items():
                if not isinstance(key, str):
                    return (
                        f"the dict key {key!r}{_at(where)} is not a string (JSON would "
                        f"turn it into {_json_key(key)!r}); "
                        "use string keys"
                    )
                pending.append((item, f"{where}[{key!r}]"))
        elif isinstance(node, list):
            pending.extend((item, f"{where}[{index}]") for index, item in enumerate(node))
        elif isinstance(node, float) and not math.isfinite(node):
            return f"{node!r}{_at(where)} is not a JSON number; use None or a string"
    return None


def _at(where: str) -> str:
    return f" (at {where})" if where else ""


def _json_key(key: Any) -> str:
    try:
        return next(iter(json.loads(json.dumps({key: None}))))
    except TypeError:  # a key JSON refuses outright (a tuple)
        return repr(key)
