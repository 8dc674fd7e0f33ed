"""The organization a piece of work runs for, as a ContextVar.

Workers set it from the message options for the length of one job; web code
may set it for the length of a request. ``None`` means a system job.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

_organization_id: ContextVar[int | None] = ContextVar("organization_id", default=None)


def get_organization_id() -> int | None:
    """Return the current organization id, or None for system work."""
    return _organization_id.get()


def set_organization_id(organization_id: int | None) -> Token[int | None]:
    return _organization_id.set(organization_id)


def reset_organization_id(token: Token[int | None]) -> None:
    _organization_id.reset(token)


@contextmanager
def organization_context(organization_id: int | None) -> Iterator[None]:
    """Run a block of code on behalf of one organization."""
    token = _organization_id.set(organization_id)
    try:
        yield
    finally:
        _organization_id.reset(token)
