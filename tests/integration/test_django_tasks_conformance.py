"""``jobs.backends.DramatiqBackend`` against what Django 6.1's own ``tests/tasks`` expect.

Django tests its ``django.tasks`` API (``test_tasks.py``) and two reference
backends: ``DummyBackend``, which stores results without running them
(``test_dummy_backend.py``), and ``ImmediateBackend``, which runs a task inside
``enqueue()`` (``test_immediate_backend.py``). This suite states the same
expectations of our backend, with the results produced by a real Dramatiq
worker, real Redis and the Postgres ledger: what Immediate returns from
``enqueue()``, ours returns from ``refresh()`` once the worker has run the task.

Where we differ on purpose, the last section asserts our behaviour, as
docs/django-tasks.md ("Differences from Django's backends") documents it:
enqueue on commit by default, queue names checked against our queues at
``using()``, ``KeyboardInterrupt`` in a task recorded as a failure, and arguments
or return values that JSON would change refused with ``TypeError``.
"""

from __future__ import annotations

import logging
import pickle
from datetime import datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction
from django.tasks import (
    DEFAULT_TASK_QUEUE_NAME,
    Task,
    TaskResult,
    TaskResultStatus,
    default_task_backend,
    task,
    task_backends,
)
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY
from django.tasks.exceptions import (
    InvalidTask,
    InvalidTaskBackend,
    TaskResultDoesNotExist,
    TaskResultMismatch,
)
from django.utils import timezone
from django.utils.module_loading import import_string

from jobs.backends import DramatiqBackend
from jobs.models import Job
from tests import tasks as test_tasks

pytestmark = pytest.mark.integration

#: A worker runs the task; the test reads the ledger back.
on_a_worker = pytest.mark.django_db(transaction=True)


def _finished(*results: TaskResult[Any, Any]) -> bool:
    for result in results:
        result.refresh()
    return all(result.is_finished for result in results)


def _queued(broker: Any, queue: str = DEFAULT_TASK_QUEUE_NAME) -> int:
    return int(broker.client.llen(f"{broker.namespace}:{queue}"))


def _assert_ran(result: TaskResult[Any, Any]) -> None:
    """The timestamps of a task that ran, as Django's ImmediateBackend tests check them."""
    assert result.is_finished is True
    assert result.enqueued_at is not None
    assert result.started_at is not None
    assert result.last_attempted_at is not None
    assert result.finished_at is not None
    assert result.started_at >= result.enqueued_at
    assert result.finished_at >= result.started_at


# --- the Task API (Django's test_tasks.py) ------------------------------------------


def test_the_decorator_makes_tasks_named_by_their_module_path_that_pickle() -> None:
    assert isinstance(test_tasks.noop_task, Task)
    assert isinstance(test_tasks.noop_task_async, Task)
    assert test_tasks.noop_task.name == "noop_task"
    assert test_tasks.noop_task.module_path == "tests.tasks.noop_task"
    assert import_string(test_tasks.noop_task.module_path) is test_tasks.noop_task
    assert import_string(test_tasks.noop_task_async.module_path) is test_tasks.noop_task_async
    assert pickle.loads(pickle.dumps(test_tasks.noop_task)) == test_tasks.noop_task
    assert test_tasks.noop_task.backend == "default"
    assert isinstance(test_tasks.noop_task.get_backend(), DramatiqBackend)
    assert default_task_backend == task_backends["default"]
    assert default_task_backend.check() == []


def test_using_returns_a_changed_copy_and_leaves_the_task_alone() -> None:
    now = timezone.now()
    noop = test_tasks.noop_task

    copy = noop.using()
    assert copy == noop
    assert copy is not noop
    assert noop.using(priority=1).priority == 1
    assert noop.using(queue_name="email").queue_name == "email"
    assert noop.using(run_after=now).run_after == now
    assert noop.using(backend="retrying").get_backend() is task_backends["retrying"]
    chained = noop.using(run_after=now).using(priority=10)
    assert (chained.priority, chained.run_after) == (10, now)
    assert (noop.priority, noop.queue_name, noop.run_after) == (0, DEFAULT_TASK_QUEUE_NAME, None)
    noop.using(priority=TASK_MAX_PRIORITY)
    noop.using(priority=TASK_MIN_PRIORITY)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"priority": -101}, InvalidTask, "priority must be a whole number between -100 and 100"),
        ({"priority": 101}, InvalidTask, "priority must be a whole number between -100 and 100"),
        ({"priority": 3.1}, InvalidTask, "priority must be a whole number between -100 and 100"),
        ({"run_after": datetime(2030, 1, 1)}, InvalidTask, "run_after must be an aware datetime"),
        ({"backend": "unknown"}, InvalidTaskBackend, "The connection 'unknown' doesn't exist"),
    ],
)
def test_using_refuses_what_django_refuses(
    change: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        test_tasks.noop_task.using(**change)


def test_the_decorator_refuses_what_django_refuses() -> None:
    with pytest.raises(InvalidTask, match="Task function must be defined at a module level"):
        task()(lambda: None)
    with pytest.raises(InvalidTask, match="does not have a first argument of 'context'"):
        task(takes_context=True)(test_tasks.calculate_meaning_of_life.func)
    with pytest.raises(TypeError, match="run_after cannot be defined statically"):
        task(run_after=timezone.now())(test_tasks.calculate_meaning_of_life.func)  # type: ignore[call-overload]


def test_a_backend_that_cannot_be_imported_or_no_backends_at_all_raise(settings: Any) -> None:
    settings.TASKS = {**settings.TASKS, "missing": {"BACKEND": "does.not.exist"}}
    with pytest.raises(InvalidTaskBackend, match=r"Could not find backend 'does\.not\.exist'"):
        test_tasks.noop_task.using(backend="missing")
    settings.TASKS = {}
    with pytest.raises(InvalidTaskBackend):
        test_tasks.noop_task.enqueue()


def test_a_queue_outside_the_backends_queues_is_refused_at_enqueue(settings: Any) -> None:
    email_task = test_tasks.noop_task.using(queue_name="email")
    settings.TASKS = {
        "default": {"BACKEND": "jobs.backends.DramatiqBackend", "QUEUES": ["default"]},
    }
    with pytest.raises(InvalidTask, match="Queue 'email' is not valid for backend"):
        email_task.enqueue()
    with pytest.raises(InvalidTask, match="Queue 'email' is not valid for backend"):
        async_to_sync(email_task.aenqueue)()


@pytest.mark.django_db
def test_arguments_json_cannot_hold_raise_type_error_at_enqueue(broker: Any) -> None:
    with pytest.raises(TypeError, match="Unsupported type"):
        test_tasks.noop_task.enqueue(datetime.now())
    with pytest.raises(TypeError, match="Unsupported type"):
        async_to_sync(test_tasks.noop_task.aenqueue)(datetime.now())
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_calling_a_task_runs_it_here_without_the_backend(broker: Any) -> None:
    assert test_tasks.calculate_meaning_of_life.call() == 42
    assert async_to_sync(test_tasks.calculate_meaning_of_life.acall)() == 42
    assert test_tasks.noop_task_async.call() is None
    assert async_to_sync(test_tasks.noop_task_async.acall)() is None
    assert not Job.objects.exists()
    assert _queued(broker) == 0


# --- results before a worker runs them (Django's test_dummy_backend.py) -----------------


@on_a_worker
def test_an_enqueued_task_is_ready_and_read_back_equal_until_a_worker_runs_it(
    broker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="django.tasks")
    results: list[TaskResult[Any, Any]] = [
        test_tasks.noop_task.enqueue(1, two=3),
        async_to_sync(test_tasks.noop_task_async.aenqueue)(1, two=3),
        default_task_backend.enqueue(test_tasks.noop_task, [1], {"two": 3}),
        test_tasks.echo.enqueue(1, two=3),
    ]

    for result in results:
        assert result.status == TaskResultStatus.READY
        assert result.is_finished is False
        assert result.enqueued_at is not None
        assert (result.started_at, result.last_attempted_at, result.finished_at) == (None,) * 3
        with pytest.raises(ValueError, match="Task has not finished yet"):
            result.return_value  # noqa: B018
        assert (result.args, result.kwargs) == ([1], {"two": 3})
        assert (result.errors, result.worker_ids, result.attempts) == ([], [], 0)
        assert result.backend == "default"
        assert f"Task id={result.id} path={result.task.module_path} enqueued" in caplog.text
        assert result.task.get_result(result.id) == result
        assert async_to_sync(default_task_backend.aget_result)(result.id) == result
        unchanged = pickle.loads(pickle.dumps(result))
        assert unchanged == result
        result.refresh()
        async_to_sync(result.arefresh)()
        assert result == unchanged
    takes_context = test_tasks.get_task_id.enqueue()
    assert takes_context.status == TaskResultStatus.READY
    assert _queued(broker) == len(results) + 1


@on_a_worker
def test_get_result_of_a_missing_result_or_through_another_task_raises(broker: Any) -> None:
    result = test_tasks.noop_task_async.enqueue()

    for missing in ("123", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(TaskResultDoesNotExist):
            test_tasks.noop_task.get_result(missing)
        with pytest.raises(TaskResultDoesNotExist):
            async_to_sync(default_task_backend.aget_result)(missing)
    with pytest.raises(TaskResultMismatch, match="Task does not match"):
        test_tasks.noop_task.get_result(result.id)
    with pytest.raises(TaskResultMismatch, match="Task does not match"):
        async_to_sync(test_tasks.noop_task.aget_result)(result.id)


# --- results once a worker ran them (Django's test_immediate_backend.py) ----------------


@on_a_worker
def test_tasks_run_on_a_worker_succeed_with_their_return_values_and_logs(
    worker: Any, wait_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="django.tasks")
    noops: list[TaskResult[Any, Any]] = [
        test_tasks.noop_task.enqueue(1, two=3),
        test_tasks.noop_task_async.enqueue(1, two=3),
        async_to_sync(test_tasks.noop_task.aenqueue)(),
    ]
    answers: list[TaskResult[Any, Any]] = [
        default_task_backend.enqueue(test_tasks.calculate_meaning_of_life, [], {}),
        async_to_sync(default_task_backend.aenqueue)(test_tasks.calculate_meaning_of_life, [], {}),
        test_tasks.calculate_meaning_of_life_async.enqueue(),
    ]
    task_id = test_tasks.get_task_id.enqueue()
    context = test_tasks.check_context.enqueue(1)

    wait_for(lambda: _finished(*noops, *answers, task_id, context))

    for result in (*noops, *answers, task_id, context):
        assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
        _assert_ran(result)
        assert result.attempts == 1
        assert result.errors == []
    for result, args, kwargs in zip(
        noops, ([1], [1], []), ({"two": 3}, {"two": 3}, {}), strict=True
    ):
        assert result.return_value is None
        assert (result.args, result.kwargs) == (args, kwargs)
    assert [result.return_value for result in answers] == [42, 42, 42]
    assert task_id.return_value == task_id.id
    for result in noops:
        started = f"Task id={result.id} path={result.task.module_path} state=RUNNING"
        finished = f"Task id={result.id} path={result.task.module_path} state=SUCCESSFUL"
        wait_for(lambda started=started, finished=finished: finished in caplog.text)
        assert caplog.text.index(started) < caplog.text.index(finished)
    assert "NoneType" not in caplog.text


@on_a_worker
def test_a_task_that_raises_or_returns_what_json_cannot_hold_fails_with_its_error(
    worker: Any, wait_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    value_error = test_tasks.failing_task_value_error.enqueue()
    system_exit = test_tasks.failing_task_system_exit.enqueue()
    complex_exception = test_tasks.complex_exception.enqueue()
    complex_return = test_tasks.complex_return_value.enqueue()

    wait_for(lambda: _finished(value_error, system_exit, complex_exception, complex_return))

    for result, exception, message in (
        (value_error, ValueError, "This task failed due to ValueError"),
        (system_exit, SystemExit, "This task failed due to SystemExit"),
    ):
        assert result.errors[0].traceback.endswith(f"{exception.__name__}: {message}\n")
        assert result.errors[0].exception_class is exception
        records = [
            r for r in caplog.records if r.name == "django.tasks" and result.id in r.getMessage()
        ]
        assert [r.levelname for r in records][-1] == "ERROR"
        assert message in caplog.text
    assert complex_exception.errors[0].exception_class is ValueError
    assert 'ValueError(ValueError("This task failed"))' in complex_exception.errors[0].traceback
    assert complex_return.errors[0].exception_class is TypeError
    assert "Unsupported type" in complex_return.errors[0].traceback
    for result in (value_error, system_exit, complex_exception, complex_return):
        assert result.status == TaskResultStatus.FAILED
        _assert_ran(result)
        with pytest.raises(ValueError, match="Task failed"):
            result.return_value  # noqa: B018
        assert result._return_value is None  # type: ignore[attr-defined]
        assert len(result.errors) == 1
        assert (result.args, result.kwargs, result.attempts) == ([], {}, 1)


# --- where we differ from Django's backends, on purpose (docs/django-tasks.md) ----------


@on_a_worker
def test_difference_a_task_is_sent_when_the_transaction_commits_by_default(broker: Any) -> None:
    # Django's Dummy and Immediate backends enqueue at once, inside the transaction.
    assert default_task_backend.enqueue_on_commit is True  # type: ignore[attr-defined]
    with transaction.atomic():
        result = test_tasks.noop_task.enqueue()
        assert result.enqueued_at is None
        assert _queued(broker) == 0

    assert _queued(broker) == 1
    assert result.enqueued_at is not None
    result.refresh()
    assert result.enqueued_at is not None

    # OPTIONS["enqueue_on_commit"] = False gives Django's behaviour.
    with transaction.atomic():
        now = test_tasks.send_now_task.enqueue()
        assert now.enqueued_at is not None
        assert _queued(broker) == 2


def test_difference_a_queue_our_workers_do_not_consume_is_refused_at_using() -> None:
    # Django checks queue names only against QUEUES, and QUEUES = [] lets any name
    # through; ours (QUEUES = [] in the settings) still refuses a queue no worker reads.
    assert task_backends["default"].queues == set()
    for queue in ("queue-2", "dead_letter"):
        with pytest.raises(InvalidTask, match=f"Queue '{queue}' is not a queue our workers"):
            test_tasks.noop_task.using(queue_name=queue)
    assert test_tasks.noop_task.using(queue_name="ai_generation").queue_name == "ai_generation"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        (({1: "a"},), {}, r"args of task .*: the dict key 1 \(at args\[0\]\) is not a string"),
        ((), {"data": {"x": {True: 1}}}, r"kwargs of task .*: the dict key True \(at kwargs\['data'\]\['x'\]\)"),
        ((float("nan"),), {}, r"args of task .*: nan \(at args\[0\]\) is not a JSON number"),
        ((), {"limit": float("inf")}, r"kwargs of task .*: inf \(at kwargs\['limit'\]\) is not a JSON"),
        (([1, -float("inf")],), {}, r"args of task .*: -inf \(at args\[0\]\[1\]\)"),
    ],
)  # fmt: skip
def test_difference_arguments_json_would_change_raise_type_error_naming_them(
    args: tuple[Any, ...], kwargs: dict[str, Any], fragment: str, broker: Any
) -> None:
    # Django's normalize_json lets these through; the ledger's JSON would hand the task
    # {"1": "a"} for {1: "a"}, and has no NaN or Infinity.
    with pytest.raises(TypeError, match=fragment):
        test_tasks.noop_task.enqueue(*args, **kwargs)
    with pytest.raises(TypeError, match=fragment):
        async_to_sync(test_tasks.noop_task.aenqueue)(*args, **kwargs)
    assert not Job.objects.exists()
    assert _queued(broker) == 0


@on_a_worker
def test_difference_a_return_value_json_would_change_fails_the_task_with_type_error(
    worker: Any, wait_for: Any
) -> None:
    nan = test_tasks.returns_nan.enqueue()
    int_keys = test_tasks.returns_int_keys.enqueue()

    wait_for(lambda: _finished(nan, int_keys))

    for result, fragment in (
        (nan, "nan (at return value) is not a JSON number"),
        (int_keys, "the dict key 1 (at return value) is not a string"),
    ):
        assert result.status == TaskResultStatus.FAILED
        assert result.errors[0].exception_class is TypeError
        assert fragment in result.errors[0].traceback
        assert Job.objects.get(pk=result.id).result is None


@on_a_worker
def test_difference_keyboard_interrupt_in_a_task_is_recorded_as_a_failure(
    worker: Any, wait_for: Any
) -> None:
    # ImmediateBackend re-raises it to the caller; on a worker it is the task's error,
    # and the worker thread goes on to the next task.
    interrupted = test_tasks.failing_task_keyboard_interrupt.enqueue()
    after = test_tasks.calculate_meaning_of_life.enqueue()

    wait_for(lambda: _finished(interrupted, after))

    assert interrupted.status == TaskResultStatus.FAILED
    _assert_ran(interrupted)
    assert interrupted.errors[0].exception_class is KeyboardInterrupt
    assert interrupted.errors[0].traceback.endswith(
        "KeyboardInterrupt: This task failed due to KeyboardInterrupt\n"
    )
    assert after.return_value == 42
    assert worker.worker_threads == 4
    assert all(thread.is_alive() for thread in worker.workers)


def test_difference_run_after_is_supported_up_to_seven_days_ahead() -> None:
    # Django's ImmediateBackend refuses run_after; ours defers the message.
    assert default_task_backend.supports_defer is True
    later = test_tasks.noop_task.using(run_after=timezone.now() + timedelta(days=8))
    with pytest.raises(InvalidTask, match="more than 7 days ahead"):
        later.enqueue()
