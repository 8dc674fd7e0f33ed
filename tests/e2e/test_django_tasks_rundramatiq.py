"""A plain ``@task`` (``tests/tasks.py``) run by ``manage.py rundramatiq`` as a subprocess."""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.tasks import TaskResultStatus

from tests import tasks as test_tasks
from tests.e2e.commands import start_worker

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_rundramatiq_runs_django_tasks_and_their_results_are_read_back(
    broker: Any, start_command: Any, wait_for: Any
) -> None:
    worker = start_worker(start_command, wait_for)

    answer = test_tasks.calculate_meaning_of_life.enqueue()
    echoed = test_tasks.get_task_id_async.enqueue()
    failing = test_tasks.failing_task_value_error.enqueue()

    def finished() -> bool:
        for result in (answer, echoed, failing):
            result.refresh()
        return all(r.is_finished for r in (answer, echoed, failing))

    wait_for(finished, timeout=40)

    assert answer.return_value == 42
    assert echoed.return_value == echoed.id
    assert failing.status == TaskResultStatus.FAILED
    assert failing.errors[0].exception_class is ValueError
    # host:pid:broker-id of a worker process, not of this test process.
    assert answer.worker_ids[0].split(":")[1] != str(os.getpid())
    assert "path=tests.tasks.calculate_meaning_of_life state=SUCCESSFUL" in worker.output()
    assert worker.stop() == 0, worker.output()
