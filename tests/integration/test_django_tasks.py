"""``django.tasks`` through ``jobs.backends.DramatiqBackend``, on a real worker.

What the backend adds to Django's expectations (those are in
``test_django_tasks_conformance.py``): the ledger row, queues, retries, defer,
priority bands, tenants, signals and enqueue-on-commit, with real Redis,
Postgres and a Dramatiq worker.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction
from django.tasks import Task, TaskResult, TaskResultStatus, default_task_backend, task_backends
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone

from jobs.backends import TASK_JOB_TYPE, DramatiqBackend
from jobs.errors import InvalidSubmission
from jobs.models import Job, JobStatus
from jobs.services import job_cancel, job_submit
from tenants.context import organization_context
from tests import tasks as test_tasks
from tests.factories import OrganizationFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _finished(result: TaskResult[Any, Any]) -> bool:
    result.refresh()
    return result.is_finished


def _queue_size(broker: Any, queue: str) -> int:
    return int(broker.client.llen(f"{broker.namespace}:{queue}"))


@pytest.fixture
def signals() -> Iterator[list[tuple[str, str, TaskResultStatus, str]]]:
    """Records (signal, result id, status, thread name) for each task signal sent."""
    seen: list[tuple[str, str, TaskResultStatus, str]] = []

    def recorder(name: str) -> Any:
        def receive(sender: Any, task_result: TaskResult[Any, Any], **kwargs: Any) -> None:
            assert sender is DramatiqBackend
            seen.append((name, task_result.id, task_result.status, threading.current_thread().name))

        return receive

    receivers = {
        task_enqueued: recorder("enqueued"),
        task_started: recorder("started"),
        task_finished: recorder("finished"),
    }
    for signal, receiver in receivers.items():
        signal.connect(receiver)
    yield seen
    for signal, receiver in receivers.items():
        signal.disconnect(receiver)


# --- backend and enqueue ----------------------------------------------------


def test_the_default_backend_is_the_dramatiq_backend_with_every_capability() -> None:
    assert default_task_backend == task_backends["default"]
    assert isinstance(task_backends["default"], DramatiqBackend)
    assert default_task_backend.alias == "default"
    assert default_task_backend.supports_defer is True
    assert default_task_backend.supports_priority is True
    assert default_task_backend.supports_get_result is True
    assert default_task_backend.supports_async_task is True
    assert default_task_backend.check() == []


def test_an_enqueued_task_is_a_ledger_job_that_names_the_task(broker: Any) -> None:
    result = test_tasks.echo.enqueue("a", n=1)

    job = Job.objects.get(pk=result.id)
    assert job.job_type == TASK_JOB_TYPE
    assert job.status == JobStatus.QUEUED
    assert job.queue == "default"
    assert job.priority == 5
    assert job.max_retries == 0
    assert job.organization is None
    assert job.payload == {
        "task": "tests.tasks.echo",
        "args": ["a"],
        "kwargs": {"n": 1},
        "backend": "default",
        "queue_name": "default",
        "priority": 0,
        "run_after": None,
    }
    assert _queue_size(broker, "default") == 1
    fetched = default_task_backend.get_result(result.id)
    assert fetched.status == TaskResultStatus.READY
    assert fetched.is_finished is False
    assert fetched.started_at is None
    assert fetched.last_attempted_at is None
    assert fetched.attempts == 0
    with pytest.raises(ValueError, match="Task has not finished yet"):
        fetched.return_value  # noqa: B018


@pytest.mark.parametrize(
    "task", [test_tasks.calculate_meaning_of_life, test_tasks.calculate_meaning_of_life_async]
)
def test_aenqueue_and_aget_result_work_from_async_code(
    task: Task[[], int], worker: Any, wait_for: Any
) -> None:
    result = async_to_sync(task.aenqueue)()
    assert result.status == TaskResultStatus.READY

    wait_for(lambda: async_to_sync(task.aget_result)(result.id).is_finished)

    fetched = async_to_sync(task.aget_result)(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL
    assert fetched.return_value == 42
    async_to_sync(result.arefresh)()
    assert result.return_value == 42


def test_a_task_runs_on_its_own_queue(worker: Any, wait_for: Any) -> None:
    result = test_tasks.email_queue_task.enqueue()

    assert Job.objects.get(pk=result.id).queue == "email"
    wait_for(lambda: _finished(result))
    assert result.return_value == "sent"


# --- results and errors -------------------------------------------------------


def test_get_result_of_an_unknown_id_raises_does_not_exist(broker: Any) -> None:
    other = job_submit(job_type="diagnostics.echo", payload={"message": "not a task"}).job
    for result_id in ("123", str(uuid.uuid4()), str(other.pk)):
        with pytest.raises(TaskResultDoesNotExist):
            default_task_backend.get_result(result_id)
        with pytest.raises(TaskResultDoesNotExist):
            async_to_sync(default_task_backend.aget_result)(result_id)


def test_a_task_cancelled_before_it_ran_is_failed(broker: Any) -> None:
    result = test_tasks.noop_task.enqueue()

    job_cancel(job=Job.objects.get(pk=result.id))
    result.refresh()

    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "jobs.errors.JobCancelled"
    assert result.attempts == 0


# --- retries (OPTIONS max_retries) ------------------------------------------------


def test_a_retried_task_counts_its_attempts_and_keeps_each_error(
    worker: Any, wait_for: Any, signals: list[Any]
) -> None:
    result = test_tasks.fails_on_first_attempt.enqueue()
    job = Job.objects.get(pk=result.id)
    assert job.max_retries == 1

    wait_for(lambda: _finished(result), timeout=30)

    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"attempt": 2, "worker_ids": 2}
    assert result.attempts == 2
    assert len(result.worker_ids) == 2
    assert [e.exception_class for e in result.errors] == [ValueError]
    assert "first attempt fails on purpose" in result.errors[0].traceback
    statuses = [(name, status) for name, rid, status, _ in signals if rid == result.id]
    assert statuses == [
        ("enqueued", TaskResultStatus.READY),
        ("started", TaskResultStatus.RUNNING),
        ("finished", TaskResultStatus.READY),  # this attempt failed; a retry follows
        ("started", TaskResultStatus.RUNNING),
        ("finished", TaskResultStatus.SUCCESSFUL),
    ]


def test_a_task_whose_retries_run_out_is_failed_with_one_error_per_attempt(
    worker: Any, wait_for: Any
) -> None:
    result = test_tasks.always_fails.enqueue()

    wait_for(lambda: _finished(result), timeout=30)

    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 2
    assert [e.exception_class for e in result.errors] == [ValueError, ValueError]
    assert result.errors[-1].traceback.endswith("ValueError: fails on every attempt\n")


# --- defer and priority ----------------------------------------------------------


def test_run_after_defers_the_task_until_that_time(worker: Any, wait_for: Any) -> None:
    run_after = timezone.now() + timedelta(seconds=2)
    result = test_tasks.noop_task.using(run_after=run_after).enqueue()

    assert Job.objects.get(pk=result.id).scheduled_for is not None
    wait_for(lambda: _finished(result), timeout=30)

    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.started_at is not None
    assert result.started_at >= run_after
    assert result.task.run_after == run_after


def test_run_after_in_the_past_runs_at_once(worker: Any, wait_for: Any) -> None:
    result = test_tasks.noop_task.using(run_after=timezone.now() - timedelta(hours=1)).enqueue()

    assert Job.objects.get(pk=result.id).scheduled_for is None
    wait_for(lambda: _finished(result))
    assert result.status == TaskResultStatus.SUCCESSFUL


def test_run_after_must_be_aware_and_at_most_seven_days_ahead() -> None:
    with pytest.raises(InvalidTask, match="run_after must be an aware datetime"):
        test_tasks.noop_task.using(run_after=timezone.now().replace(tzinfo=None))
    with pytest.raises(InvalidTask, match="more than 7 days ahead"):
        test_tasks.noop_task.using(run_after=timezone.now() + timedelta(days=8)).enqueue()
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("task_priority", "job_priority", "band"),
    [(100, 10, "default.urgent"), (30, 7, "default.urgent"), (0, 5, "default"),
     (-30, 4, "default"), (-31, 3, "default.bulk"), (-100, 0, "default.bulk")],
)  # fmt: skip
def test_a_task_priority_maps_onto_our_priority_and_band(
    task_priority: int, job_priority: int, band: str, broker: Any
) -> None:
    result = test_tasks.noop_task.using(priority=task_priority).enqueue()

    assert Job.objects.get(pk=result.id).priority == job_priority
    assert _queue_size(broker, band) == 1
    assert default_task_backend.get_result(result.id).task.priority == task_priority


# --- context and async -------------------------------------------------------------


def test_an_async_task_that_takes_context_gets_its_task_result(worker: Any, wait_for: Any) -> None:
    result = test_tasks.get_task_id_async.enqueue()

    wait_for(lambda: _finished(result))

    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == result.id


@pytest.mark.parametrize("task", [test_tasks.whoami, test_tasks.whoami_async])
def test_a_task_enqueued_for_an_organization_runs_in_its_tenant_context(
    task: Any, worker: Any, wait_for: Any
) -> None:
    org = OrganizationFactory.create()
    with organization_context(org.pk):
        result = task.enqueue()

    wait_for(lambda: _finished(result))

    assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    assert result.return_value["organization_id"] == org.pk
    assert result.return_value["job_id"] == result.id
    assert Job.objects.get(pk=result.id).organization == org


def test_get_result_inside_a_tenant_context_sees_only_that_tenants_tasks(broker: Any) -> None:
    mine = OrganizationFactory.create()
    theirs = OrganizationFactory.create()
    with organization_context(mine.pk):
        result = test_tasks.noop_task.enqueue()
        assert default_task_backend.get_result(result.id).id == result.id
    with organization_context(theirs.pk), pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(result.id)


# --- signals ---------------------------------------------------------------------


def test_enqueued_fires_on_enqueue_and_started_and_finished_fire_on_the_worker(
    worker: Any, wait_for: Any, signals: list[Any]
) -> None:
    ok = test_tasks.noop_task.enqueue()
    failing = test_tasks.failing_task_value_error.enqueue()

    wait_for(lambda: _finished(ok) and _finished(failing))
    wait_for(lambda: sum(1 for s in signals if s[0] == "finished") == 2)

    main = threading.current_thread().name
    for result, final in ((ok, TaskResultStatus.SUCCESSFUL), (failing, TaskResultStatus.FAILED)):
        sent = [(name, status) for name, rid, status, _ in signals if rid == result.id]
        assert sent == [
            ("enqueued", TaskResultStatus.READY),
            ("started", TaskResultStatus.RUNNING),
            ("finished", final),
        ]
        threads = [thread for name, rid, _, thread in signals if rid == result.id]
        assert threads[0] == main
        assert threads[1] != main
        assert threads[2] == threads[1]


def test_a_receiver_that_raises_does_not_change_the_outcome(
    worker: Any, wait_for: Any, caplog: Any
) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    task_started.connect(broken)
    task_finished.connect(broken)
    try:
        result = test_tasks.calculate_meaning_of_life.enqueue()
        wait_for(lambda: _finished(result))
    finally:
        task_started.disconnect(broken)
        task_finished.disconnect(broken)

    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42
    assert "receiver bug" in caplog.text


# --- enqueue on commit -------------------------------------------------------------


def test_a_task_enqueued_in_a_transaction_is_sent_only_after_commit(
    broker: Any, signals: list[Any]
) -> None:
    with transaction.atomic():
        result = test_tasks.noop_task.enqueue()

        assert result.enqueued_at is None
        assert _queue_size(broker, "default") == 0
        assert signals == []

    assert _queue_size(broker, "default") == 1
    assert result.enqueued_at is not None
    assert [s[:2] for s in signals] == [("enqueued", result.id)]


def test_a_task_enqueued_in_a_rolled_back_transaction_is_never_sent(
    broker: Any, signals: list[Any]
) -> None:
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        result = test_tasks.noop_task.enqueue()
        raise Rollback

    assert _queue_size(broker, "default") == 0
    assert signals == []
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(result.id)


def test_with_enqueue_on_commit_off_a_task_is_sent_before_the_transaction_commits(
    broker: Any, signals: list[Any], wait_for: Any
) -> None:
    assert task_backends["send_now"].enqueue_on_commit is False  # type: ignore[attr-defined]
    with transaction.atomic():
        result = test_tasks.send_now_task.enqueue()

        assert _queue_size(broker, "default") == 1
        assert result.enqueued_at is not None
        assert [s[:2] for s in signals] == [("enqueued", result.id)]


def test_with_enqueue_on_commit_off_the_worker_runs_the_task_once_the_row_commits(
    worker: Any, wait_for: Any
) -> None:
    with transaction.atomic():
        result = test_tasks.send_now_task.enqueue()
        # The worker already has the message; it waits for this commit.

    wait_for(lambda: _finished(result))
    assert result.return_value == "ran"
    assert Job.objects.get(pk=result.id).queue == "default"


def test_with_enqueue_on_commit_off_a_task_runs_even_if_the_transaction_rolls_back(
    worker: Any, wait_for: Any
) -> None:
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        result = test_tasks.send_now_task.enqueue()
        raise Rollback

    # The worker recreates the row from the message (the ledger's adopt path).
    wait_for(lambda: Job.objects.filter(pk=result.id, status=JobStatus.SUCCEEDED).exists())
    result.refresh()
    assert result.return_value == "ran"


def test_job_submit_refuses_a_queue_override_workers_do_not_consume(broker: Any) -> None:
    with pytest.raises(InvalidSubmission, match="queue 'dead_letter' is not a queue") as caught:
        job_submit(job_type="diagnostics.echo", payload={"message": "x"}, queue="dead_letter")
    assert caught.value.field == "queue"
