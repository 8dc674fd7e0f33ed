"""The chaos scenarios: a soak (:mod:`tests.chaos.soak`) through a Postgres restart, a Sentinel
failover, and network cuts between the workers and Redis, then Postgres.

Each scenario starts its own servers (one shared Postgres cluster holds a
migrated template database that each scenario copies), runs the soak, and
stops them. :data:`FULL` is the release check (``make chaos``); :data:`SHORT`,
the same at a small size with shorter faults, runs in ``make test``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.chaos.servers import PostgresCluster, SentinelRedis, private_port, tcp_proxy
from tests.chaos.soak import Deployment, Fault, SoakResult, app_env, run_soak
from tests.servers import RedisServer, wait_until

TEMPLATE = "chaos_template"


@dataclass(frozen=True)
class Size:
    """How big a run is.

    Parameters:
      jobs: jobs in the soak.
      sleep_seconds: how long each job works.
      postgres_outages: seconds Postgres stays down, each time.
      cut_seconds: how long a network cut lasts.
      deadline_seconds: how long the rest of the soak may take after the fault.
      workers: worker processes (``rundramatiq -p 1 -t 8`` each).
    """

    jobs: int
    sleep_seconds: float
    postgres_outages: tuple[float, ...]
    cut_seconds: float
    deadline_seconds: float
    workers: int


FULL = Size(
    jobs=2_000,
    sleep_seconds=0.05,
    postgres_outages=(5, 20),
    cut_seconds=10,
    deadline_seconds=600,
    workers=2,
)
SHORT = Size(
    jobs=150,
    sleep_seconds=0.3,
    postgres_outages=(2, 5),
    cut_seconds=4,
    deadline_seconds=240,
    workers=1,
)


class Bench:
    """The servers every scenario shares: a Postgres cluster with a migrated template."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.postgres = PostgresCluster()
        self.postgres.start()
        self.postgres.create_database(TEMPLATE)
        effects = self.effects_server("template-effects")
        try:
            Deployment(
                directory, app_env(DATABASE_URL=self.postgres.url(TEMPLATE), **self._redis(effects))
            ).manage("migrate", "-v0")
        finally:
            effects.stop()

    def effects_server(self, name: str) -> RedisServer:
        server = RedisServer(self.directory / name, port=private_port())
        server.wait_ready()
        return server

    def database(self) -> str:
        if not self.postgres.running():
            self.postgres.start()
        name = f"chaos_{uuid.uuid4().hex[:8]}"
        self.postgres.create_database(name, template=TEMPLATE)
        return name

    @staticmethod
    def _redis(server: RedisServer) -> dict[str, str]:
        return {
            "REDIS_URL": f"redis://127.0.0.1:{server.port}/0",
            "CHAOS_EFFECTS_URL": f"redis://127.0.0.1:{server.port}/1",
        }

    def close(self) -> None:
        self.postgres.close()


@contextmanager
def _deployed(
    bench: Bench,
    name: str,
    size: Size,
    env: dict[str, str],
    worker_env: dict[str, str] | None = None,
) -> Iterator[Deployment]:
    directory = bench.directory / name
    directory.mkdir(parents=True, exist_ok=True)
    deployment = Deployment(
        directory, app_env(**env), app_env(**worker_env) if worker_env else None, size.workers
    )
    try:
        deployment.start(private_port())
        yield deployment
    finally:
        deployment.stop()


def _soak(
    bench: Bench,
    deployment: Deployment,
    database: str,
    effects: RedisServer,
    fault: Fault,
    size: Size,
) -> SoakResult:
    return run_soak(
        deployment=deployment,
        ledger_url=bench.postgres.url(database),
        effects=effects,
        fault=fault,
        jobs=size.jobs,
        sleep_seconds=size.sleep_seconds,
        deadline_seconds=size.deadline_seconds,
    )


def postgres_restart(bench: Bench, size: Size) -> SoakResult:
    """Postgres stopped and started twice mid-run (``size.postgres_outages`` seconds each)."""
    database = bench.database()
    redis_server = bench.effects_server("pg-restart-redis")
    try:
        env = {"DATABASE_URL": bench.postgres.url(database), **Bench._redis(redis_server)}
        with _deployed(bench, "postgres-restart", size, env) as deployment:

            def inject(probe: Callable[[], None], reached: Callable[[float], None]) -> None:
                for i, seconds in enumerate(size.postgres_outages):
                    reached(0.25 + 0.35 * i)  # the first at 25 % done, the next at 60 %
                    bench.postgres.stop()
                    ends = time.monotonic() + seconds
                    probe()
                    time.sleep(max(0.0, ends - time.monotonic()))
                    bench.postgres.start()

            outages = " + ".join(f"{s:g} s" for s in size.postgres_outages)
            fault = Fault(f"Postgres restart ({outages})", inject, 0.25, expect_refusals=True)
            return _soak(bench, deployment, database, redis_server, fault, size)
    finally:
        redis_server.stop()


def sentinel_failover(bench: Bench, size: Size) -> SoakResult:
    """``SENTINEL FAILOVER`` mid-run; wake-ups, fairness and the scheduler lock move along."""
    database = bench.database()
    sentinels = SentinelRedis(bench.directory / "sentinel")
    effects = bench.effects_server("sentinel-effects")
    try:
        env = {
            "DATABASE_URL": bench.postgres.url(database),
            "CHAOS_EFFECTS_URL": f"redis://127.0.0.1:{effects.port}/1",
            **sentinels.env(),
        }
        with _deployed(bench, "sentinel-failover", size, env) as deployment:
            checks: list[str] = []

            def inject(probe: Callable[[], None], reached: Callable[[float], None]) -> None:
                sentinels.failover()
                primary = sentinels.current_primary()
                # Checked while jobs still run: the fairness slots exist only then.
                for what, holds in (
                    ("fairness slots", lambda: primary.keys("dramatiq:fairness:running:*")),
                    ("wake-up subscribers", lambda: primary.pubsub_channels("*__wakeups__*")),
                    ("scheduler leader lock", lambda: primary.exists("dramatiq:scheduler:leader")),
                ):
                    try:
                        wait_until(holds, timeout=30, what=f"{what} on the new primary")
                    except AssertionError as exc:
                        checks.append(str(exc))

            fault = Fault("Sentinel failover", inject, fault_at=0.4)
            result = _soak(bench, deployment, database, effects, fault, size)
            result.notes += checks
            return result
    finally:
        effects.stop()
        sentinels.close()


def network_cut(bench: Bench, size: Size, *, link: str) -> SoakResult:
    """The workers' link to Redis (``link="redis"``) or Postgres cut for ``size.cut_seconds``."""
    database = bench.database()
    redis_server = bench.effects_server(f"cut-{link}-redis")
    target = redis_server.port if link == "redis" else bench.postgres.port
    try:
        with tcp_proxy(target) as (proxy, proxy_port):
            env = {"DATABASE_URL": bench.postgres.url(database), **Bench._redis(redis_server)}
            worker_env = dict(env)
            if link == "redis":
                worker_env["REDIS_URL"] = f"redis://127.0.0.1:{proxy_port}/0"
            else:
                worker_env["DATABASE_URL"] = bench.postgres.url(database, port=proxy_port)
            with _deployed(bench, f"cut-{link}", size, env, worker_env) as deployment:

                def inject(probe: Callable[[], None], reached: Callable[[float], None]) -> None:
                    proxy.cut()
                    time.sleep(size.cut_seconds)
                    proxy.restore()

                name = f"Network cut worker-{'Redis' if link == 'redis' else 'Postgres'}"
                fault = Fault(f"{name} ({size.cut_seconds:g} s)", inject, fault_at=0.4)
                return _soak(bench, deployment, database, redis_server, fault, size)
    finally:
        redis_server.stop()


SCENARIOS: dict[str, Callable[[Bench, Size], SoakResult]] = {
    "postgres-restart": postgres_restart,
    "sentinel-failover": sentinel_failover,
    "cut-redis": lambda bench, size: network_cut(bench, size, link="redis"),
    "cut-postgres": lambda bench, size: network_cut(bench, size, link="postgres"),
}


def table(results: list[SoakResult]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| scenario | jobs | succeeded exactly once | doubles | lost | stuck | "
        "time to full throughput after the fault |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        recovery = "—" if r.recovery_seconds is None else f"{r.recovery_seconds:.1f} s"
        lines.append(
            f"| {r.scenario} | {r.jobs} | {r.exactly_once} | {r.doubles} | {r.lost} | "
            f"{r.stuck} | {recovery} |"
        )
    return "\n".join(lines)
