"""Redis Sentinel: a master, a replica and a Sentinel on loopback; jobs run before and after a failover."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from jobs.models import Job, JobStatus
from tests.e2e.commands import run_manage
from tests.e2e.conftest import subprocess_env
from tests.servers import RedisServer, free_port, sentinel_command, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "sentinel-test-master-password"
SENTINEL_PASSWORD = "sentinel-test-sentinel-password"
MASTER_NAME = "toolboxai-test"


@dataclass
class SentinelSetup:
    master: RedisServer
    replica: RedisServer
    sentinel: RedisServer

    def sentinel_client(self) -> redis.Redis:
        return self.sentinel.client(password=SENTINEL_PASSWORD, decode_responses=True)

    def master_port(self) -> int:
        _host, port = self.sentinel_client().sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)

    def env(self) -> dict[str, str]:
        """Settings that point a process at the Sentinel (REDIS_URL's host is ignored)."""
        return subprocess_env(
            REDIS_URL=f"redis://:{PASSWORD}@ignored.invalid:1/0",
            REDIS_SENTINELS=f"127.0.0.1:{self.sentinel.port}",
            REDIS_SENTINEL_MASTER=MASTER_NAME,
            REDIS_SENTINEL_PASSWORD=SENTINEL_PASSWORD,
        )


def replica_link_up(server: RedisServer) -> bool:
    info = server.client().info("replication")
    return info.get("role") == "slave" and info.get("master_link_status") == "up"


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[SentinelSetup]:
    servers: list[RedisServer] = []
    try:
        master = RedisServer(tmp_path / "master", password=PASSWORD)
        servers.append(master)
        master.wait_ready()
        replica = RedisServer(
            tmp_path / "replica",
            password=PASSWORD,
            args=["--replicaof", "127.0.0.1", str(master.port)],
        )
        servers.append(replica)
        replica.wait_ready()
        wait_until(lambda: replica_link_up(replica), timeout=30, what="replication link up")

        sentinel_dir = tmp_path / "sentinel"
        sentinel_dir.mkdir()
        port = free_port()
        config = sentinel_dir / "sentinel.conf"
        config.write_text(
            f"port {port}\n"
            "bind 127.0.0.1\n"
            f"dir {sentinel_dir}\n"
            f"requirepass {SENTINEL_PASSWORD}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} 1\n"
            f"sentinel auth-pass {MASTER_NAME} {PASSWORD}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 2000\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
        )
        sentinel = RedisServer(
            sentinel_dir, argv=sentinel_command(config), port=port, password=SENTINEL_PASSWORD
        )
        servers.append(sentinel)
        sentinel.wait_ready()
        setup = SentinelSetup(master=master, replica=replica, sentinel=sentinel)

        def sentinel_knows_the_replica() -> bool:
            replicas = setup.sentinel_client().sentinel_slaves(MASTER_NAME)
            return any(
                int(r["port"]) == replica.port and "s_down" not in r["flags"] for r in replicas
            )

        # Sentinel discovers replicas from the master's INFO, every 10 s.
        wait_until(sentinel_knows_the_replica, timeout=40, what="Sentinel discovering the replica")
        yield setup
    finally:
        for server in reversed(servers):
            server.stop()


def submit_echo_jobs(env: dict[str, str], count: int, label: str) -> list[str]:
    """Submit through a separate process configured for Sentinel, as the web would."""
    code = (
        "from jobs.services import job_submit\n"
        f"for i in range({count}):\n"
        f"    print(job_submit(job_type='diagnostics.echo', payload={{'message': '{label}-%d' % i}}).job.id)\n"
    )
    result = run_manage(env, "shell", "--no-imports", "-c", code)
    assert result.returncode == 0, result.stderr
    ids = result.stdout.split()
    assert len(ids) == count, result.stdout
    return ids


def all_succeeded(ids: list[str]) -> bool:
    return Job.objects.filter(pk__in=ids, status=JobStatus.SUCCEEDED).count() == len(ids)


def test_jobs_run_through_redis_sentinel_before_and_after_a_failover(
    sentinel_setup: SentinelSetup, start_command: Any
) -> None:
    setup = sentinel_setup
    assert setup.master_port() == setup.master.port
    env = setup.env()
    worker = start_command("rundramatiq", "--processes", "1", "--threads", "4", **env)
    wait_until(
        lambda: "Worker process is ready" in worker.output() or worker.proc.poll() is not None,
        timeout=60,
        what="the worker starting",
    )
    assert worker.proc.poll() is None, worker.output()

    before = submit_echo_jobs(env, 5, "before")
    wait_until(lambda: all_succeeded(before), timeout=60, what="the first jobs succeeding")
    # They went through the master the Sentinel named: the worker registered there,
    # and its wake-up listener subscribed there.
    assert setup.master.client().exists("dramatiq:__workers__")
    assert setup.master.client().pubsub_channels("dramatiq:__wakeups__:*")

    setup.sentinel_client().execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
    wait_until(
        lambda: setup.master_port() == setup.replica.port,
        timeout=60,
        what="the Sentinel promoting the replica",
    )
    wait_until(
        lambda: setup.replica.client().info("replication")["role"] == "master",
        timeout=30,
        what="the replica becoming master",
    )

    # The wake-up listener followed the failover: it resubscribed on the new master.
    wait_until(
        lambda: setup.replica.client().pubsub_channels("dramatiq:__wakeups__:*"),
        timeout=60,
        what="the wake-up listener resubscribing on the new master",
    )
    after = submit_echo_jobs(env, 5, "after")
    wait_until(lambda: all_succeeded(after), timeout=120, what="the jobs after failover succeeding")
    results = sorted(Job.objects.filter(pk__in=after).values_list("result", flat=True), key=str)
    assert results == [{"message": f"after-{i}"} for i in range(5)]
    assert worker.proc.poll() is None, worker.output()
    assert worker.stop() == 0, worker.output()
