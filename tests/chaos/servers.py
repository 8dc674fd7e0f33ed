"""Private servers for the chaos scenarios: a Postgres cluster, Redis with Sentinels, TCP proxies.

Every server listens on loopback, keeps its files under the scenario's
directory and is stopped by the scenario. Ports come from ``CHAOS_PORTS``
(``first-last``, for machines that hand each user a range) or else from the
kernel's free ports. Postgres runs from the ``pgserver`` wheel's binaries (a
dependency of ``make install``), or from ``pg_config --bindir``; as root it runs
as the ``postgres`` user, because ``initdb`` refuses root.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
import redis

from bench.proxy import DelayProxy
from tests.servers import RedisServer, sentinel_command, wait_until


def private_port() -> int:
    """A free loopback port, from ``CHAOS_PORTS`` when it is set."""
    spec = os.environ.get("CHAOS_PORTS", "")
    if not spec:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    first, _, last = spec.partition("-")
    ports = list(range(int(first), int(last or first) + 1))
    random.shuffle(ports)
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in CHAOS_PORTS={spec}")


def postgres_bindir(user: str | None = None) -> Path:
    """Postgres's binaries: the pgserver wheel's, else the system's.

    As root, the cluster runs as ``user``, who must be able to execute them: a
    virtualenv under a private directory (``mktemp -d``) is out of its reach.
    """
    candidates = []
    # Found without importing pgserver, whose import warns about XDG_RUNTIME_DIR.
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin")
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for bindir in candidates:
        if not (bindir / "pg_ctl").exists() or not (bindir / "initdb").exists():
            continue
        if user is None or _executable_by(user, bindir / "initdb"):
            return bindir
    raise AssertionError(
        "No Postgres binaries"
        + (f" the {user} user can run" if user else "")
        + ": run `make install` (the pgserver wheel) from a directory it can reach, "
        "or install Debian's postgresql package."
    )


def _executable_by(user: str, path: Path) -> bool:
    check = subprocess.run(["test", "-x", str(path)], user=user, check=False, timeout=30)
    return check.returncode == 0


class PostgresCluster:
    """A private Postgres cluster (``initdb`` + ``pg_ctl``) on a loopback port.

    ``stop()`` is a fast shutdown (clients are disconnected), ``start()`` brings it back
    on the same port and data, as a restart or a failover to the same address would.
    """

    def __init__(self) -> None:
        # Its own directory that the postgres user can reach (a test's tmp_path is private to root).
        directory = Path(tempfile.mkdtemp(prefix="chaos-postgres-"))
        directory.chmod(0o755)
        self.directory = directory
        self.data = directory / "data"
        self.port = private_port()
        self._user: str | None = "postgres" if os.geteuid() == 0 else None
        self.bindir = postgres_bindir(self._user)
        if self._user:
            account = pwd.getpwnam(self._user)
            os.chown(directory, account.pw_uid, account.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "--encoding=utf8"
        )

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            [str(self.bindir / tool), *args],
            user=self._user,
            cwd=self.directory,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise AssertionError(f"{tool} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.directory / "log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str, *, port: int | None = None) -> str:
        return f"postgres://postgres@127.0.0.1:{port or self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=5)

    def create_database(self, name: str, *, template: str | None = None) -> None:
        with self.connect() as conn:
            clause = f" TEMPLATE {template}" if template else ""
            conn.execute(f"CREATE DATABASE {name}{clause}")

    def close(self) -> None:
        if self.running():
            with suppress(AssertionError):
                self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class SentinelRedis:
    """A Redis primary, one replica and three Sentinels watching them, all private."""

    MASTER = "chaos"

    def __init__(self, directory: Path) -> None:
        self.servers: list[RedisServer] = []
        try:
            self.primary = self._server(directory / "primary", [])
            self.replica = self._server(
                directory / "replica", ["--replicaof", "127.0.0.1", str(self.primary.port)]
            )
            wait_until(self._replica_up, timeout=30, what="the replica linking to its primary")
            self.sentinels = [self._sentinel(directory / f"sentinel-{i}") for i in range(3)]
            wait_until(
                self._sentinels_know_the_replica, timeout=40, what="Sentinels finding the replica"
            )
        except BaseException:
            self.close()
            raise

    def _server(self, directory: Path, args: list[str]) -> RedisServer:
        server = RedisServer(directory, args=["--appendonly", "no", *args], port=private_port())
        self.servers.append(server)
        server.wait_ready()
        return server

    def _sentinel(self, directory: Path) -> RedisServer:
        directory.mkdir(parents=True)
        port = private_port()
        config = directory / "sentinel.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor {self.MASTER} 127.0.0.1 {self.primary.port} 2\n"
            f"sentinel down-after-milliseconds {self.MASTER} 2000\n"
            f"sentinel failover-timeout {self.MASTER} 10000\n"
        )
        server = RedisServer(directory, argv=sentinel_command(config), port=port)
        self.servers.append(server)
        server.wait_ready()
        return server

    def _replica_up(self) -> bool:
        info = self.replica.client().info("replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def _sentinels_know_the_replica(self) -> bool:
        for sentinel in self.sentinels:
            replicas = sentinel.client(decode_responses=True).sentinel_slaves(self.MASTER)
            if not any(int(r["port"]) == self.replica.port for r in replicas):
                return False
        return True

    def master_port(self) -> int:
        client = self.sentinels[0].client(decode_responses=True)
        return int(client.sentinel_get_master_addr_by_name(self.MASTER)[1])

    def env(self) -> dict[str, str]:
        return {
            "REDIS_URL": "redis://ignored.invalid:1/0",
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels),
            "REDIS_SENTINEL_MASTER": self.MASTER,
        }

    def failover(self) -> None:
        """``SENTINEL FAILOVER``: the replica becomes the primary (the old one a replica)."""
        old = self.master_port()
        self.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", self.MASTER)
        wait_until(lambda: self.master_port() != old, timeout=60, what="the Sentinels failing over")

    def current_primary(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.master_port())

    def close(self) -> None:
        for server in reversed(self.servers):
            server.stop()


@contextmanager
def tcp_proxy(target_port: int) -> Iterator[tuple[DelayProxy, int]]:
    """A TCP proxy to a loopback port (no added delay) that can cut the link."""
    proxy = DelayProxy(("127.0.0.1", private_port()), ("127.0.0.1", target_port), delay_us=0)
    port = proxy.start()
    try:
        yield proxy, port
    finally:
        proxy.stop()


def wait_port(port: int, timeout: float = 30) -> None:
    def open_() -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    deadline = time.monotonic() + timeout
    while not open_():
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on port {port}")
        time.sleep(0.1)
