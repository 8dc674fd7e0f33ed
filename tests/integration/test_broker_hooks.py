"""The broker calls only the middleware that define a hook, exactly as Dramatiq's emit would."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
import pytest
from dramatiq.middleware import SkipMessage

from jobs.transport.broker import JobsRedisBroker


class Recorder(dramatiq.Middleware):
    def __init__(self, name: str, calls: list[str], fail: BaseException | None = None) -> None:
        self.name = name
        self.calls = calls
        self.fail = fail

    def before_ack(self, broker: dramatiq.Broker, message: Any) -> None:
        self.calls.append(f"{self.name}:before_ack")
        if self.fail is not None:
            raise self.fail

    def after_ack(self, broker: dramatiq.Broker, message: Any) -> None:
        self.calls.append(f"{self.name}:after_ack")
        if self.fail is not None:
            raise self.fail


def test_hooks_run_in_dramatiqs_order_and_follow_changes_to_the_middleware_list(
    broker: JobsRedisBroker,
) -> None:
    calls: list[str] = []
    first, second = Recorder("first", calls), Recorder("second", calls)
    broker.add_middleware(first)
    try:
        broker.emit_before("ack", None)  # the hook list is read and kept
        broker.add_middleware(second)
        broker.emit_before("ack", None)
        broker.emit_after("ack", None)
        broker.middleware.remove(first)  # a list changed in place is seen too
        broker.emit_before("ack", None)
    finally:
        for m in (first, second):
            if m in broker.middleware:
                broker.middleware.remove(m)
    assert calls == [
        "first:before_ack",
        "first:before_ack",
        "second:before_ack",
        "second:after_ack",  # after_* hooks run in reverse order
        "first:after_ack",
        "second:before_ack",
    ]
    broker.emit_before("ack", None)
    assert len(calls) == 6, "removed middleware are not called"


def test_a_failing_hook_is_logged_and_the_others_still_run_but_skip_message_propagates(
    broker: JobsRedisBroker, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    failing = Recorder("failing", calls, fail=RuntimeError("boom"))
    after = Recorder("after", calls)
    broker.add_middleware(failing)
    broker.add_middleware(after)
    try:
        with caplog.at_level(logging.CRITICAL):
            broker.emit_before("ack", None)
            broker.emit_after("ack", None)
        assert calls == [
            "failing:before_ack",
            "after:before_ack",
            "after:after_ack",
            "failing:after_ack",
        ]
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL] == [
            f"Unexpected failure in before_ack of {failing!r}.",
            f"Unexpected failure in after_ack of {failing!r}.",
        ]
        failing.fail = SkipMessage()
        with pytest.raises(SkipMessage):
            broker.emit_before("ack", None)
    finally:
        broker.middleware.remove(failing)
        broker.middleware.remove(after)


def test_no_op_hooks_of_the_base_class_are_not_called(broker: JobsRedisBroker) -> None:
    defining = broker.middleware_defining("before_ack")
    assert defining == [
        m for m in broker.middleware if type(m).before_ack is not dramatiq.Middleware.before_ack
    ]
    assert len(defining) < len(broker.middleware)
