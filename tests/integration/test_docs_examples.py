"""The Python examples of README.md and the docs pages run, against real Postgres, Redis
and a worker.

Each page's examples run in order in one namespace, as a reader would type them into
``manage.py shell``; what a page says must come true afterwards (its ``snippet:
expect`` markers) is polled until it holds. Job types an example declares are bound to
the broker as ``JobsConfig.ready()`` would bind them, and forgotten after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
from django.conf import settings
from dramatiq.brokers.redis import RedisBroker

from jobs.broker import bind
from jobs.models import Job
from jobs.registry import all_job_types, unregister_job_type
from tests.docs_pages import ROOT, blocks, pages

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

RUNNABLE = {
    str(page.relative_to(ROOT)): [b for b in blocks(page) if b.lang == "python" and b.skip is None]
    for page in pages()
}
PAGES = sorted(page for page, runnable in RUNNABLE.items() if runnable)


@pytest.fixture
def job_types_restored(broker: RedisBroker) -> Iterator[None]:
    """Forget the job types an example declared, and their actors."""
    before = {jt.name for jt in all_job_types()}
    yield
    for name in {jt.name for jt in all_job_types()} - before:
        unregister_job_type(name)
        broker.actors.pop(name, None)


def test_the_docs_have_python_examples_that_run() -> None:
    assert len(PAGES) >= 6
    assert sum(map(len, RUNNABLE.values())) >= 12


@pytest.mark.parametrize("page", PAGES)
def test_the_python_examples_of_a_page_run_and_do_what_it_says(
    page: str,
    broker: RedisBroker,
    worker: dramatiq.Worker,
    job_types_restored: None,
    wait_for: Callable[..., Any],
) -> None:
    namespace: dict[str, Any] = {"__name__": f"docs_example_{len(page)}"}
    for block in RUNNABLE[page]:
        exec(compile(block.code, block.where, "exec"), namespace)
        bind(broker)
        if block.expect is not None:
            scope = {**namespace, "Job": Job, "settings": settings}
            expectation = block.expect
            wait_for(lambda scope=scope, e=expectation: eval(e, scope), timeout=30)
