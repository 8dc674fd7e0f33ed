"""bench/proxy.py: the delaying TCP proxy the benchmark (and chaos tests) put in front of a link."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bench.proxy import DelayProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo_port: int) -> Iterator[DelayProxy]:
    p = DelayProxy(("127.0.0.1", 0), ("127.0.0.1", echo_port), delay_us=0)
    p.start()
    yield p
    p.stop()


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _round_trip(s: socket.socket, payload: bytes = b"ping") -> float:
    began = time.perf_counter()
    s.sendall(payload)
    assert _recv_exactly(s, len(payload)) == payload
    return time.perf_counter() - began


def test_the_proxy_forwards_bytes_unchanged_both_ways(proxy: DelayProxy) -> None:
    payload = bytes(range(256)) * 400
    with _connect(proxy.port) as s:
        s.sendall(payload)
        assert _recv_exactly(s, len(payload)) == payload


def test_every_round_trip_takes_at_least_twice_the_delay(proxy: DelayProxy) -> None:
    proxy.set_delay(5_000)
    with _connect(proxy.port) as s:
        trips = [_round_trip(s) for _ in range(5)]
    assert min(trips) >= 0.0097  # 5 ms each way, less the at most 150 µs a timer is armed early
    assert max(trips) < 1.0


def test_pipelined_requests_keep_their_order_and_share_one_delay(proxy: DelayProxy) -> None:
    proxy.set_delay(20_000)  # 40 ms a round trip: 100 of them one by one would take 4 s
    messages = [f"{i:05d}".encode() for i in range(100)]
    with _connect(proxy.port) as s:
        began = time.perf_counter()
        for message in messages:
            s.sendall(message)
            time.sleep(0.001)  # paced, so the proxy reads each as a chunk of its own
        echoed = _recv_exactly(s, 5 * len(messages))
        elapsed = time.perf_counter() - began
    assert echoed == b"".join(messages)
    assert 0.039 <= elapsed < 1.0


def test_the_proxy_counts_round_trips_a_pipeline_as_one(proxy: DelayProxy) -> None:
    with _connect(proxy.port) as s:
        for _ in range(3):
            _round_trip(s)
        proxy.set_delay(20_000)
        s.sendall(b"one")
        s.sendall(b"two")  # sent long before the answer to "one": the same round trip
        assert _recv_exactly(s, 6) == b"onetwo"
    assert proxy.turns == 4


def test_a_cut_closes_connections_and_refuses_new_ones_until_restored(proxy: DelayProxy) -> None:
    with _connect(proxy.port) as s:
        _round_trip(s)
        proxy.cut()
        try:
            closed = s.recv(10) == b""
        except ConnectionResetError:
            closed = True
        assert closed
    with pytest.raises(ConnectionRefusedError):
        _connect(proxy.port)
    proxy.restore()
    with _connect(proxy.port) as s:
        assert _round_trip(s) < 1.0


def test_a_timed_cut_accepts_connections_again_by_itself(
    proxy: DelayProxy, wait_for: Callable[..., Any]
) -> None:
    proxy.cut(seconds=0.3)
    with pytest.raises(ConnectionRefusedError):
        _connect(proxy.port)

    def answers() -> bool:
        try:
            with _connect(proxy.port) as s:
                _round_trip(s)
            return True
        except ConnectionRefusedError:
            return False

    wait_for(answers, timeout=10)
