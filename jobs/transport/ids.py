"""UUIDs in batches: one read of the OS's RNG for a whole submission.

``uuid.uuid4()`` per job costs a ``urandom`` system call, a ``UUID`` object
and ``str()`` each (bench/HISTORY.md). ``uuid4_texts`` makes the same ids: 122
random bits from ``os.urandom`` with the version and variant bits set.

Job ids are time-ordered (``uuid7s``, RFC 9562 version 7): the Unix time in
milliseconds, then 74 random bits. A new job's key then lands at the right edge
of ``jobs_job``'s primary-key index, next to the jobs submitted just before it,
instead of on a random page of an index that grows with the ledger: with
5,000,000 jobs, random keys made a bulk submission write 2.6 times the WAL (a
full-page image of nearly every index page it touched after a checkpoint) at half
the rate (docs/performance.md, "Flat as the ledger grows").
"""

from __future__ import annotations

import os
import time
import uuid

#: Version 4 in byte 6 and the RFC 4122 variant in byte 8, applied with ``bytes.translate``.
_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))
#: Version 7 in byte 6.
_VERSION_7 = bytes((b & 0x0F) | 0x70 for b in range(256))


def _stamped(raw: bytearray, version: bytes) -> bytes:
    """16-byte ids with their version (a ``translate`` table) and variant bits set."""
    raw[6::16] = raw[6::16].translate(version)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    return bytes(raw)


def _random_bytes(count: int) -> bytes:
    return _stamped(bytearray(os.urandom(16 * count)), _VERSION_4)


def _text(digits: str) -> str:
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _pairs(data: bytes) -> list[tuple[uuid.UUID, str]]:
    """Each 16 bytes of ``data`` as a ``UUID`` and as its text."""
    digits = data.hex()
    return [
        (uuid.UUID(bytes=data[i : i + 16]), _text(digits[2 * i : 2 * i + 32]))
        for i in range(0, len(data), 16)
    ]


def uuid4_texts(count: int) -> list[str]:
    """``count`` new ids as ``str(uuid.uuid4())`` writes them."""
    digits = _random_bytes(count).hex()
    return [_text(digits[i : i + 32]) for i in range(0, 32 * count, 32)]


def uuid4s(count: int) -> list[tuple[uuid.UUID, str]]:
    """``count`` new ids, each as a ``UUID`` and as its text."""
    return _pairs(_random_bytes(count))


def uuid7s(count: int, *, now_ms: int | None = None) -> list[tuple[uuid.UUID, str]]:
    """``count`` new time-ordered ids (version 7), each as a ``UUID`` and as its text.

    ``now_ms``: the Unix time in milliseconds they carry (default: now). Ids of
    the same millisecond differ in their 74 random bits, in no particular order.
    """
    ms = (time.time_ns() // 1_000_000 if now_ms is None else now_ms).to_bytes(6, "big")
    raw = bytearray(os.urandom(16 * count))
    for offset, byte in enumerate(ms):
        raw[offset::16] = bytes((byte,)) * count
    return _pairs(_stamped(raw, _VERSION_7))
