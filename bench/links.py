"""The links to Redis and Postgres of each latency section, and what they cost.

A section is ``loopback`` (every system talks to Redis and Postgres directly) or an
added round trip such as ``0.5ms``: then one ``bench.proxy`` process in front of
Redis and one in front of Postgres delay every chunk by half of it each way, and
every system's workers, clients and web server connect through them. The bench's
own control links (resets, releases, completion polling) stay direct.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import signal
import statistics
import subprocess
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

from bench.config import PY, ROOT, Config
from bench.services import conninfo
from bench.workers import cpu_seconds

RTT_SAMPLES = 200


@dataclasses.dataclass(frozen=True)
class Latency:
    name: str
    delay_us: float  # each way

    @property
    def proxied(self) -> bool:
        return self.delay_us > 0


def parse_latencies(text: str) -> list[Latency]:
    """``loopback,0.5ms`` → loopback, and 0.5 ms added round trip (250 µs each way)."""
    out = []
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        if part == "loopback":
            out.append(Latency("loopback", 0.0))
            continue
        match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|us|µs)", part)
        if not match:
            raise ValueError(f"latency {part!r}: use loopback, or a round trip like 0.5ms, 500us")
        value = float(match[1]) * (1000 if match[2] == "ms" else 1)
        out.append(Latency(part, value / 2))
    return out


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    auth, _, _ = parts.netloc.rpartition("@")
    netloc = f"{auth + '@' if auth else ''}127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _target(url: str, default_port: int) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or default_port}"


class ProxyProcess:
    """``python -m bench.proxy`` in its own process."""

    def __init__(self, target: str, delay_us: float) -> None:
        self.proc = subprocess.Popen(
            [
                PY,
                "-m",
                "bench.proxy",
                "--listen",
                "127.0.0.1:0",
                "--target",
                target,
                "--delay-us",
                str(delay_us),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"bench.proxy to {target} did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def turns(self) -> int:
        """The round trips the proxy has carried so far (``DelayProxy.turns``)."""
        assert self.proc.stdout is not None
        self.proc.send_signal(signal.SIGHUP)
        line = self.proc.stdout.readline()
        if not line.startswith("turns "):
            raise RuntimeError(f"bench.proxy answered {line!r} to SIGHUP")
        return int(line.split()[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class Links:
    """A section's links: direct, or through one delaying proxy per service."""

    def __init__(self, cfg: Config, latency: Latency, *, proxy: bool | None = None) -> None:
        self.latency = latency
        self.proxies: dict[str, ProxyProcess] = {}
        redis_url, database_url = cfg.redis_url, cfg.database_url
        if latency.proxied if proxy is None else proxy:
            self.proxies["redis"] = ProxyProcess(_target(redis_url, 6379), latency.delay_us)
            self.proxies["postgres"] = ProxyProcess(_target(database_url, 5432), latency.delay_us)
            redis_url = _with_port(redis_url, self.proxies["redis"].port)
            database_url = _with_port(database_url, self.proxies["postgres"].port)
        self.cfg = dataclasses.replace(
            cfg, child_redis_url=redis_url, child_database_url=database_url, latency=latency.name
        )

    def proxy_cpu(self) -> float:
        return sum(p.cpu() for p in self.proxies.values())

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()


def round_trips(database_url: str, redis_url: str, n: int = RTT_SAMPLES) -> dict[str, float]:
    """Median ``SELECT 1`` and ``PING`` round trips (ms), as the systems' drivers see them."""
    info, dbname = conninfo(database_url)
    pg_ms, redis_ms = [], []
    with psycopg.connect(info, dbname=dbname, autocommit=True) as conn:
        conn.execute("SELECT 1")
        for _ in range(n):
            began = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            pg_ms.append((time.perf_counter() - began) * 1000)
    client = redis.Redis.from_url(redis_url)
    client.ping()
    for _ in range(n):
        began = time.perf_counter()
        client.ping()
        redis_ms.append((time.perf_counter() - began) * 1000)
    client.close()
    return {
        "postgres_select1_ms": statistics.median(pg_ms),
        "redis_ping_ms": statistics.median(redis_ms),
    }


def _redis_benchmark(port: int, db: int) -> float | None:
    """Pipelined SET+GET requests/s (16 clients, 32 deep) with redis-benchmark, if installed."""
    tool = shutil.which("redis-benchmark")
    if tool is None:
        return None
    proc = subprocess.run(
        [
            tool,
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "--dbnum",
            str(db),
            "-c",
            "16",
            "-P",
            "32",
            "-n",
            "200000",
            "-t",
            "set,get",
            "-q",
            "--csv",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    rates = [float(line.split(",")[1].strip('"')) for line in proc.stdout.splitlines()[1:]]
    return statistics.mean(rates) if rates else None


def proxy_overhead(cfg: Config, delay_us: float) -> dict[str, Any]:
    """Round trips direct, through a proxy at delay 0 and at ``delay_us``; pipelined throughput."""
    out: dict[str, Any] = {"delay_us": delay_us}
    out["direct"] = round_trips(cfg.database_url, cfg.redis_url)
    db = int(urlsplit(cfg.redis_url).path.lstrip("/") or 0)
    for label, delay in (("proxy_0us", 0.0), (f"proxy_{delay_us:g}us", delay_us)):
        links = Links(cfg, Latency(label, delay), proxy=True)
        try:
            out[label] = round_trips(links.cfg.child_database_url, links.cfg.child_redis_url)
            if delay:
                out["pipelined_direct_rps"] = _redis_benchmark(
                    urlsplit(cfg.redis_url).port or 6379, db
                )
                cpu, began = links.proxies["redis"].cpu(), time.monotonic()
                out["pipelined_proxied_rps"] = _redis_benchmark(links.proxies["redis"].port, db)
                out["pipelined_proxy_cpu_share"] = (links.proxies["redis"].cpu() - cpu) / (
                    time.monotonic() - began
                )
        finally:
            links.stop()
    return out
