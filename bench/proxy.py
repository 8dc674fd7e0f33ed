"""A small TCP proxy that adds a fixed delay to every chunk, and can cut the link.

The bench puts one in front of Redis and one in front of Postgres to measure every
system with a round trip longer than loopback's. Chaos tests can reuse it to cut a
link and restore it::

    proxy = DelayProxy(("127.0.0.1", 0), ("127.0.0.1", 6379), delay_us=250)
    port = proxy.start()        # its own event loop thread; returns the listening port
    proxy.set_delay(0)          # takes effect for chunks read from now on
    proxy.cut(seconds=3)        # close every connection, refuse new ones for 3 s
    proxy.cut()                 # ... or until restore()
    proxy.restore()
    proxy.stop()

or as a process::

    python -m bench.proxy --listen 127.0.0.1:7001 --target 127.0.0.1:6379 --delay-us 250

(SIGUSR1 cuts, SIGUSR2 restores, SIGHUP prints ``turns N``, the round trips it has
carried so far, SIGTERM or SIGINT stops; it prints ``listening on HOST:PORT`` once
it accepts connections.)

How the delay works: each direction of each connection keeps a FIFO of
(deadline, chunk). A chunk read at time t is due at t + delay (never before the chunk
ahead of it, so order holds even when the delay changes); one timer per direction
writes every chunk that is due at once and re-arms for the next. Reading never waits
for writing, so pipelined requests stay pipelined: the delay adds latency, not a
limit on throughput. A direction stops reading only while more than 4 MiB wait in
its FIFO or in the socket's write buffer.

The event loop uses ``select()``, whose timeout has microsecond resolution (``epoll``
rounds it up to a millisecond, which would turn 250 µs into 1 ms), and the proxy's
thread asks the kernel for a 1 ns timer slack (default 50 µs). Timers still fire some
tens of µs late on a VM, so they are armed early by a moving average of that lateness
(at most 150 µs): the delay is right on average, with the machine's jitter around
it. ``select()`` limits
one proxy to about 500 connections (file descriptors below 1024).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import selectors
import signal
import sys
import threading
from collections import deque
from collections.abc import Coroutine, Sequence
from typing import Any

HIGH_WATER_BYTES = 4 * 1024 * 1024
LOW_WATER_BYTES = 1024 * 1024
#: The most the timers are armed early (a burst of load must not make every delay short).
MAX_LATENESS_SECONDS = 150e-6
_PR_SET_TIMERSLACK = 29


def _fine_timer_slack() -> None:
    """1 ns timer slack for the calling thread (Linux; harmless where it fails)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host or "127.0.0.1", int(port))


class _Direction:
    """One direction of one connection: chunks read from ``src``, written to ``dst`` late."""

    def __init__(self, proxy: DelayProxy, conn: _Connection) -> None:
        self.proxy = proxy
        self.conn = conn
        self.src: asyncio.Transport | None = None
        self.dst: asyncio.Transport | None = None
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queued = 0
        self.last_due = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.armed_at = 0.0
        self.dst_full = False
        self.paused = False
        self.eof = False  # the source sent EOF: pass it on once the FIFO is empty
        self.eof_sent = False

    def push(self, data: bytes) -> None:
        loop = self.proxy.loop
        delay = self.proxy.delay_seconds
        if delay <= 0 and not self.queue and self.dst is not None:
            self.dst.write(data)
            return
        due = max(loop.time() + delay, self.last_due)
        self.last_due = due
        self.queue.append((due, data))
        self.queued += len(data)
        self._throttle()
        if self.timer is None and self.dst is not None:
            self._arm()

    def _arm(self) -> None:
        self.armed_at = self.proxy.timer_at(self.queue[0][0])
        self.timer = self.proxy.loop.call_at(self.armed_at, self.flush)

    def flush(self) -> None:
        self.timer = None
        if self.dst is None or self.dst.is_closing():
            return
        now = self.proxy.woke(self.armed_at)
        chunks = []
        while self.queue and self.queue[0][0] <= now + self.proxy.lateness:
            chunks.append(self.queue.popleft()[1])
        if chunks:
            self.queued -= sum(len(c) for c in chunks)
            self.dst.write(b"".join(chunks) if len(chunks) > 1 else chunks[0])
        if self.queue:
            self._arm()
        else:
            self._pass_eof()
        self._throttle()

    def end(self) -> None:
        self.eof = True
        if not self.queue:
            self._pass_eof()

    def _pass_eof(self) -> None:
        if not self.eof or self.eof_sent or self.dst is None:
            return
        self.eof_sent = True
        if self.dst.can_write_eof():
            self.dst.write_eof()
        self.conn.half_closed()

    def connected(self, dst: asyncio.Transport) -> None:
        self.dst = dst
        if self.queue and self.timer is None:
            self._arm()
        elif not self.queue:
            self._pass_eof()

    def set_dst_full(self, full: bool) -> None:
        self.dst_full = full
        self._throttle()

    def _throttle(self) -> None:
        if self.src is None:
            return
        if not self.paused and (self.queued > HIGH_WATER_BYTES or self.dst_full):
            self.paused = True
            self.src.pause_reading()
        elif self.paused and self.queued < LOW_WATER_BYTES and not self.dst_full:
            self.paused = False
            self.src.resume_reading()

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()


class _Side(asyncio.Protocol):
    """The socket to the client or to the target; reads into one direction."""

    def __init__(self, conn: _Connection, inbound: _Direction, outbound: _Direction) -> None:
        self.conn = conn
        self.inbound = inbound  # what this side reads
        self.outbound = outbound  # what this side is written
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.conn.closed:  # cut while it was connecting
            transport.abort()
            return
        self.inbound.src = transport
        self.outbound.connected(transport)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        from_client = self is conn.client
        if from_client and not conn.client_spoke_last:
            conn.proxy.turns += 1  # a request after a reply (or the first): one round trip
        conn.client_spoke_last = from_client
        self.inbound.push(data)

    def eof_received(self) -> bool | None:
        self.inbound.end()
        return True  # keep writing the other direction until it ends too

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.close()

    def pause_writing(self) -> None:
        self.outbound.set_dst_full(True)

    def resume_writing(self) -> None:
        self.outbound.set_dst_full(False)


class _Connection:
    def __init__(self, proxy: DelayProxy) -> None:
        self.proxy = proxy
        self.upstream = _Direction(proxy, self)  # client -> target
        self.downstream = _Direction(proxy, self)  # target -> client
        self.client = _Side(self, self.upstream, self.downstream)
        self.target = _Side(self, self.downstream, self.upstream)
        self.closed = False
        #: Whether the last chunk read came from the client (see ``DelayProxy.turns``).
        self.client_spoke_last = False

    def start(self) -> None:
        self.proxy.connections.add(self)
        self.proxy.spawn(self._connect())

    async def _connect(self) -> None:
        try:
            await self.proxy.loop.create_connection(lambda: self.target, *self.proxy.target)
        except OSError:
            self.close()

    def half_closed(self) -> None:
        if self.upstream.eof_sent and self.downstream.eof_sent:
            self.close(graceful=True)

    def close(self, graceful: bool = False) -> None:
        """Close both sockets: gracefully flushes what is written, else drops it (a cut)."""
        if self.closed:
            return
        self.closed = True
        self.proxy.connections.discard(self)
        for direction in (self.upstream, self.downstream):
            direction.close()
        for side in (self.client, self.target):
            if side.transport is not None:
                if graceful:
                    side.transport.close()
                else:
                    side.transport.abort()


class DelayProxy:
    """A TCP proxy from ``listen`` to ``target`` that delays each chunk by ``delay_us``."""

    def __init__(
        self, listen: tuple[str, int], target: tuple[str, int], delay_us: float = 0.0
    ) -> None:
        self.listen = listen
        self.target = target
        self.delay_seconds = delay_us / 1e6
        #: How late the loop's timers fire (moving average, seconds): timers are armed
        #: this much early, so a chunk's delay is right on average.
        self.lateness = 0.0
        self.port = listen[1]
        #: Round trips: the times a client spoke after the server (or first), over every
        #: connection. A pipeline is one; a server's push (pub/sub) is none.
        self.turns = 0
        self.connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._restore_timer: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "the proxy is not running"
        return self._loop

    # --- in its own thread ----------------------------------------------------------

    def start(self) -> int:
        """Start the proxy's event loop in a thread; returns the port it listens on."""
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            _fine_timer_slack()
            loop = new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.open())
            except BaseException as exc:
                failed.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"proxy-{self.target[1]}", daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            raise failed[0]
        return self.port

    def stop(self) -> None:
        """Close every connection and the listening socket, and end the thread."""
        if self._thread is None:
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    def set_delay(self, delay_us: float) -> None:
        """Delay each chunk read from now on by ``delay_us`` microseconds (each direction)."""
        self.delay_seconds = max(0.0, delay_us) / 1e6

    def cut(self, seconds: float | None = None) -> None:
        """Close every connection and refuse new ones, for ``seconds`` or until restore()."""

        async def cut() -> None:
            self.cut_now(seconds)

        asyncio.run_coroutine_threadsafe(cut(), self.loop).result(timeout=10)

    def restore(self) -> None:
        """Accept connections again after a cut."""
        asyncio.run_coroutine_threadsafe(self.restore_now(), self.loop).result(timeout=10)

    # --- on the loop ----------------------------------------------------------------

    async def open(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._server = await self.loop.create_server(
            self._accept, self.listen[0], self.port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` on the loop, holding a reference until it ends (the loop holds none)."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def timer_at(self, due: float) -> float:
        return due - self.lateness

    def woke(self, armed_at: float) -> float:
        """A timer armed for ``armed_at`` fired: update the lateness estimate; returns now."""
        now = self.loop.time()
        late = min(max(now - armed_at, 0.0), MAX_LATENESS_SECONDS)
        self.lateness += (late - self.lateness) * 0.05
        return now

    def _accept(self) -> _Side:
        conn = _Connection(self)
        conn.start()
        return conn.client

    def cut_now(self, seconds: float | None = None) -> None:
        if self._restore_timer is not None:
            self._restore_timer.cancel()
            self._restore_timer = None
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self.connections):
            conn.close()
        if seconds is not None:
            self._restore_timer = self.loop.call_later(
                seconds, lambda: self.spawn(self.restore_now())
            )

    async def restore_now(self) -> None:
        if self._restore_timer is not None:
            self._restore_timer.cancel()
            self._restore_timer = None
        if self._server is None:
            await self.open()

    async def _shutdown(self) -> None:
        self.cut_now()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An event loop on select(): microsecond timeouts (epoll's are milliseconds)."""
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__)
    parser.add_argument("--listen", required=True, help="HOST:PORT to listen on (port 0: any)")
    parser.add_argument("--target", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--delay-us", type=float, default=0.0, help="delay each way, µs")
    ns = parser.parse_args(argv)
    _fine_timer_slack()
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    proxy = DelayProxy(_address(ns.listen), _address(ns.target), ns.delay_us)
    proxy._loop = loop
    loop.run_until_complete(proxy.open())
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.add_signal_handler(signal.SIGINT, loop.stop)
    loop.add_signal_handler(signal.SIGUSR1, proxy.cut_now)
    loop.add_signal_handler(signal.SIGUSR2, lambda: proxy.spawn(proxy.restore_now()))
    loop.add_signal_handler(signal.SIGHUP, lambda: print(f"turns {proxy.turns}", flush=True))
    print(f"listening on {proxy.listen[0]}:{proxy.port}", flush=True)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(proxy._shutdown())
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
