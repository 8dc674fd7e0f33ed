"""The chaos scenarios' short form: one small soak through each fault (``make chaos`` runs the full form).

Each ends with every job succeeded exactly once (one succeeded attempt and one
side effect per job), none lost, none stuck in ``running``, delayed jobs not
run early, every process alive, and every process that lost a server saying
that it has it back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.scenarios import SHORT, Bench, network_cut, postgres_restart, sentinel_failover
from tests.chaos.soak import SoakResult

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    directory: Path = tmp_path_factory.mktemp("chaos")
    bench = Bench(directory)
    yield bench
    bench.close()


def _assert_clean(result: SoakResult) -> None:
    assert (result.exactly_once, result.doubles, result.lost, result.stuck) == (
        result.jobs,
        0,
        0,
        0,
    ), result
    assert result.delayed_early == 0, result
    assert result.dead_processes == [], result
    assert result.silent_processes == [], result
    assert result.notes == [], result


def test_every_job_succeeds_exactly_once_through_two_postgres_restarts(bench: Bench) -> None:
    result = postgres_restart(bench, SHORT)

    _assert_clean(result)
    assert result.refused >= 1, "a submission during the outage is refused with 503"
    assert result.half_made == 0
    assert {"web", "scheduler"} <= set(result.noticed), result


def test_every_job_succeeds_exactly_once_through_a_sentinel_failover(bench: Bench) -> None:
    _assert_clean(sentinel_failover(bench, SHORT))


def test_every_job_succeeds_exactly_once_through_a_cut_between_workers_and_redis(
    bench: Bench,
) -> None:
    _assert_clean(network_cut(bench, SHORT, link="redis"))


def test_every_job_succeeds_exactly_once_through_a_cut_between_workers_and_postgres(
    bench: Bench,
) -> None:
    result = network_cut(bench, SHORT, link="postgres")

    _assert_clean(result)
    assert "worker-0" in result.noticed, result
