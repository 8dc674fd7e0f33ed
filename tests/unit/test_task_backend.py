"""``jobs.backends.DramatiqBackend`` without a worker: priority mapping, checks, error paths."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.tasks import task_backends

from jobs.backends import DramatiqBackend, job_priority_of
from jobs.backends.results import _exception_path
from tests import tasks as test_tasks


def _backend(**params: Any) -> DramatiqBackend:
    return DramatiqBackend("test", {"BACKEND": "jobs.backends.DramatiqBackend", **params})


def _ids(backend: DramatiqBackend) -> list[str]:
    return [message.id for message in backend.check() if message.id]


@pytest.mark.parametrize(
    ("task_priority", "job_priority"),
    [(-100, 0), (-91, 0), (-90, 1), (-31, 3), (-30, 4), (0, 5), (29, 6), (30, 7), (90, 10),
     (100, 10)],
)  # fmt: skip
def test_django_priorities_map_onto_ours_with_zero_in_the_normal_band(
    task_priority: int, job_priority: int
) -> None:
    assert job_priority_of(task_priority) == job_priority


def test_a_priority_outside_djangos_range_is_refused() -> None:
    with pytest.raises(ValueError, match="priority 101 is outside"):
        job_priority_of(101)


def test_a_configuration_with_our_queues_and_known_options_passes_the_checks() -> None:
    backend = _backend(
        QUEUES=["default", "email"], OPTIONS={"enqueue_on_commit": False, "max_retries": 3}
    )
    assert backend.check() == []
    assert backend.enqueue_on_commit is False
    assert backend.max_retries == 3


def test_the_options_default_to_enqueue_on_commit_and_no_retries() -> None:
    backend = _backend()
    assert backend.check() == []
    assert backend.queues == {"default"}
    assert backend.enqueue_on_commit is True
    assert backend.max_retries == 0


def test_the_checks_name_a_queue_our_workers_do_not_consume() -> None:
    messages = _backend(QUEUES=["default", "emails", "dead_letter"]).check()

    assert [m.id for m in messages] == ["jobs.E102", "jobs.E102"]
    assert "'emails'" in messages[0].msg
    assert "'dead_letter'" in messages[1].msg
    assert all(m.level == checks.ERROR for m in messages)
    assert "ai_generation" in (messages[0].hint or "")


def test_the_checks_refuse_queues_given_as_a_string() -> None:
    assert _ids(_backend(QUEUES="default")) == ["jobs.E101"]


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"enqueue_on_comit": False}, "unknown option 'enqueue_on_comit'"),
        ({"enqueue_on_commit": "no"}, "OPTIONS['enqueue_on_commit'] must be True or False"),
        ({"max_retries": -1}, "OPTIONS['max_retries'] must be a whole number"),
        ({"max_retries": 101}, "OPTIONS['max_retries'] must be a whole number"),
        ({"max_retries": True}, "OPTIONS['max_retries'] must be a whole number"),
        ([("max_retries", 1)], "OPTIONS must be a dict"),
    ],
)
def test_the_checks_name_a_bad_option(options: Any, fragment: str) -> None:
    backend = _backend(OPTIONS=options)

    messages = backend.check()

    assert [m.id for m in messages] == ["jobs.E103"]
    assert fragment in messages[0].msg
    assert "TASKS['test']" in messages[0].msg


def test_using_a_backend_with_a_bad_option_raises_naming_it(settings: Any) -> None:
    settings.TASKS = {
        **settings.TASKS,
        "bad": {"BACKEND": "jobs.backends.DramatiqBackend", "OPTIONS": {"max_retries": "3"}},
    }
    with pytest.raises(ImproperlyConfigured, match=r"TASKS\['bad'\]: OPTIONS\['max_retries'\]"):
        test_tasks.noop_task.using(backend="bad").enqueue()


def test_djangos_system_checks_report_our_backend_errors(settings: Any) -> None:
    settings.TASKS = {
        "default": {"BACKEND": "jobs.backends.DramatiqBackend", "QUEUES": ["nope"]},
    }
    assert isinstance(task_backends["default"], DramatiqBackend)

    ids = [message.id for message in checks.run_checks()]

    assert "jobs.E102" in ids


@pytest.mark.parametrize(
    ("name", "traceback", "path"),
    [
        ("ValueError", "Traceback ...\nValueError: boom\n", "builtins.ValueError"),
        ("EchoFailure", "  File x\njobs.actors.diagnostics.EchoFailure: no\n",
         "jobs.actors.diagnostics.EchoFailure"),
        ("Inner", "Traceback\nmod.Outer.Inner\n", "mod.Outer.Inner"),
        ("SystemExit", "", "builtins.SystemExit"),
        ("JobCancelled", "", "jobs.errors.JobCancelled"),
        ("TimeLimitExceeded", "", "dramatiq.middleware.time_limit.TimeLimitExceeded"),
        ("Mystery", "  raise Mystery()\n", "Mystery"),
    ],
)  # fmt: skip
def test_an_exception_recorded_by_name_is_resolved_to_its_dotted_path(
    name: str, traceback: str, path: str
) -> None:
    assert _exception_path(name, traceback) == path
