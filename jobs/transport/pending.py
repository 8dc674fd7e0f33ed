"""A Redis command sent now whose reply is read later, so a Postgres round trip overlaps it.

redis-py sends a command and waits for its reply in one call. A submission
instead sends its admission (or, for a system job, its ``PING``) on a
connection of the broker's pool, writes its ledger row meanwhile, and only
then reads the reply: the two round trips overlap.
"""

from __future__ import annotations

from typing import Any

import redis

from jobs.transport.broker import get_broker


class PendingReply:
    """One command on a connection held until its reply is read (or dropped).

    :meth:`read` returns the reply (or raises its error, ``redis.RedisError``);
    :meth:`drop` forgets it. Either returns the connection to the pool; a
    connection whose reply is not read cleanly is closed, never reused.
    """

    def __init__(self, *args: Any) -> None:
        self._pool = get_broker().client.connection_pool
        self._conn: Any = self._pool.get_connection()
        try:
            self._conn.send_command(*args)
        except BaseException:
            self._close()
            raise

    def read(self) -> Any:
        conn = self._conn
        if conn is None:
            raise RuntimeError("This reply was read or dropped already.")
        try:
            reply = conn.read_response()
        except redis.ResponseError:
            self._release()  # an error reply: the connection is in step
            raise
        except BaseException:
            self._close()
            raise
        self._release()
        return reply

    def drop(self) -> None:
        """Forget the reply (the command may have run); the connection is closed."""
        if self._conn is not None:
            self._close()

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        self._pool.release(conn)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        try:
            conn.disconnect()
        finally:
            self._pool.release(conn)


def send_ping() -> PendingReply:
    """``PING`` the broker's Redis; ``read()`` raises ``redis.RedisError`` if it did not answer."""
    return PendingReply("PING")


def send_evalsha(sha: str, keys: list[str], args: list[Any]) -> PendingReply:
    """``EVALSHA`` a registered script; ``read()`` raises ``NoScriptError`` if Redis lost it."""
    return PendingReply("EVALSHA", sha, len(keys), *keys, *args)
