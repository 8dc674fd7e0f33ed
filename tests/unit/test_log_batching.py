"""The batching log handler: every line is written, in order; warnings at once; nothing lost at exit."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from typing import cast

import pytest

from jobs.logging import BatchingStreamHandler


class RecordingStream:
    """A stream that remembers each write and the thread that made it."""

    def __init__(self, delay: float = 0.0) -> None:
        self.writes: list[tuple[str, str]] = []
        self.delay = delay

    def write(self, text: str) -> None:
        if self.delay:
            time.sleep(self.delay)
        self.writes.append((threading.current_thread().name, text))

    def flush(self) -> None:
        pass

    def lines(self) -> list[str]:
        return "".join(text for _, text in self.writes).splitlines()


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, BatchingStreamHandler, RecordingStream]]:
    stream = RecordingStream()
    handler = BatchingStreamHandler(stream)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"tests.batching.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, handler, stream
    logger.removeHandler(handler)
    handler.close()


def test_info_lines_from_many_threads_are_all_written_in_each_threads_order(
    log: tuple[logging.Logger, BatchingStreamHandler, RecordingStream],
) -> None:
    logger, _handler, stream = log

    def work(n: int) -> None:
        for i in range(300):
            logger.info("t%d line %d", n, i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 10
    while len(stream.lines()) < 8 * 300 and time.monotonic() < deadline:
        time.sleep(0.01)

    lines = stream.lines()
    assert len(lines) == 8 * 300
    for n in range(8):
        mine = [int(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(f"INFO t{n} ")]
        assert mine == list(range(300)), "a thread's lines keep their order"
    assert {who for who, _ in stream.writes} == {"log-writer"}, "the writer thread writes them"
    assert len(stream.writes) < len(lines), "lines that piled up share a write"


def test_a_warning_is_written_before_logging_returns_after_the_lines_before_it(
    log: tuple[logging.Logger, BatchingStreamHandler, RecordingStream],
) -> None:
    logger, _handler, stream = log
    stream.delay = 0.05  # the writer thread is slow: INFO lines wait for it

    for i in range(20):
        logger.info("before %d", i)
    logger.warning("the failure")

    assert stream.lines()[-1] == "WARNING the failure"
    assert stream.lines()[:-1] == [f"INFO before {i}" for i in range(20)]


def test_write_through_makes_every_line_synchronous(
    log: tuple[logging.Logger, BatchingStreamHandler, RecordingStream],
) -> None:
    logger, handler, stream = log
    stream.delay = 0.05
    logger.info("pending")
    handler.write_through()
    assert stream.lines() == ["INFO pending"]
    logger.info("after")
    assert stream.lines() == ["INFO pending", "INFO after"]


def _child_logs(fd: int, count: int) -> None:
    stream = RecordingStreamToFd(fd)
    handler = BatchingStreamHandler(stream)  # type: ignore[arg-type]
    logger = logging.getLogger("tests.batching.child")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.handlers = [handler]
    for i in range(count):
        logger.info("child %d", i)
    # Returning ends the process with os._exit, as a Dramatiq worker process does: no atexit.


class RecordingStreamToFd:
    """A slow stream on a pipe: the writer thread is mid-write when the process returns."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, text: str) -> None:
        time.sleep(0.05)
        os.write(self.fd, text.encode())

    def flush(self) -> None:
        pass


def test_a_forked_worker_process_writes_its_pending_lines_when_it_exits() -> None:
    # Dramatiq forks its worker processes, which leave with os._exit (no atexit).
    read_fd, write_fd = os.pipe()
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_child_logs, args=(write_fd, 200))
    child.start()
    os.close(write_fd)
    chunks = []
    while data := os.read(read_fd, 65536):
        chunks.append(data)
    os.close(read_fd)
    child.join(30)
    assert child.exitcode == 0
    lines = b"".join(chunks).decode().splitlines()
    assert lines == [f"child {i}" for i in range(200)]


def test_the_handler_in_settings_is_the_batching_one() -> None:
    from django.conf import settings

    handlers = cast(dict[str, dict[str, str]], settings.LOGGING["handlers"])
    assert handlers["console"]["class"] == "jobs.logging.BatchingStreamHandler"
    root = logging.getLogger()
    assert any(isinstance(h, BatchingStreamHandler) for h in root.handlers)
