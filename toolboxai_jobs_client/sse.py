"""Reading a Server-Sent Events stream into (event, data) pairs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    """One event of the stream; ``data`` is its text (JSON for this API's events)."""

    event: str
    data: str


def sse_events(lines: Iterable[str]) -> Iterator[Event]:
    """The events of a stream's lines (comments such as ``: heartbeat`` are skipped)."""
    event, data = "message", list[str]()
    for line in lines:
        if line == "":
            if data:
                yield Event(event=event, data="\n".join(data))
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield Event(event=event, data="\n".join(data))
