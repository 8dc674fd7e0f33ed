"""Processing throughput: stage a workload, release it to idle workers at once, time it."""

from __future__ import annotations

import time
from typing import Any

import redis

from bench.config import STAGE, Config
from bench.huey_keys import DONE_KEY, LAST_PREFIX, queue_key
from bench.services import Services, client


def release(r: redis.Redis, system: str) -> list[bytes]:
    """Move the staged workload into the live queues in one transaction; returns live keys."""
    if system == "d":
        with r.pipeline(transaction=True) as pipe:
            pipe.rename(queue_key(STAGE), queue_key())
            pipe.execute()
        return []
    if system == "c":
        src, dst, pattern = STAGE.encode(), b"celery", STAGE + "*"
    else:
        src, dst, pattern = f"{STAGE}:".encode(), b"dramatiq:", f"{STAGE}:*"
    keys = []
    for key in r.scan_iter(match=pattern, count=1000):
        kind = r.type(key)
        if kind == b"list" or (kind == b"hash" and key.endswith(b".msgs")):
            keys.append(key)
    with r.pipeline(transaction=True) as pipe:
        for key in keys:
            pipe.rename(key, dst + key[len(src) :])
        if system == "b":
            # B's submissions publish a wake-up for each queue they fill, and its idle
            # consumers wait for one (polling only once a second as a safety net). The
            # release stands for those submissions, so it publishes their wake-ups.
            # A's consumers poll, C's block on BRPOP and D's on BZPOPMIN, as deployed.
            from jobs.transport.wakeups import publish_wakeups, wakeup_channel

            lists = [k[len(src) :].decode() for k in keys if not k.endswith(b".msgs")]
            publish_wakeups(pipe, wakeup_channel(dst.decode().rstrip(":"), r), lists)
        pipe.execute()
    return [dst + k[len(src) :] for k in keys if k.endswith(b".msgs")]


def _huey_finished(r: redis.Redis, total: int) -> float | None:
    """When D's last job finished, once its workers have reported ``total`` finished jobs."""
    done = int(r.get(DONE_KEY) or 0)
    if done < total:
        return None
    stamps = [float(v) for v in r.mget(list(r.scan_iter(match=LAST_PREFIX + "*"))) if v]
    return max(stamps) if stamps else time.time()


def run_staged(
    cfg: Config,
    services: Services,
    system: str,
    *,
    kind: str,
    n: int,
    urgent_after: int | None = None,
) -> dict[str, Any]:
    """Stage n jobs, release them to idle workers at once, and time them to the last one."""
    r = services.redis
    args = ["--kind", kind, "--n", str(n)]
    if urgent_after is not None:
        args += ["--urgent-after", str(urgent_after)]
    stage_env = {
        "a": {"BENCH_DRAMATIQ_NAMESPACE": STAGE},
        "b": {"JOBS_REDIS_NAMESPACE": STAGE},
        "c": {"BENCH_CELERY_QUEUE": STAGE},
        "d": {"BENCH_HUEY_NAME": STAGE},
    }[system]
    staged = client(cfg, system, "stage", *args, **stage_env)
    total = n + (1 if urgent_after is not None else 0)
    time.sleep(0.5)
    if system == "d":
        r.delete(DONE_KEY, *r.scan_iter(match=LAST_PREFIX + "*"))
    released = time.time()
    live = release(r, system)
    watch = live + [k.replace(b".msgs", b".DQ.msgs") for k in live]
    urgent_at: float | None = None
    finished: float | None = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if urgent_after is not None and urgent_at is None:
            urgent_at = _urgent_started(services, system, staged.get("urgent_id"))
        if system == "c":
            count = services.scalar("SELECT count(*) FROM django_celery_results_taskresult")
            finished = time.time() if count >= total else None
        elif system == "d":
            # Huey has no acknowledgement: its workers report (in batches, off the job's
            # path) how many jobs they finished and when the last one did.
            finished = _huey_finished(r, total)
        else:
            finished = time.time() if sum(r.hlen(k) for k in watch) == 0 else None
        if finished is not None:
            break
        time.sleep(0.02)
    if finished is None:
        finished = time.time()
    if urgent_after is not None and urgent_at is None:
        urgent_at = _urgent_started(services, system, staged.get("urgent_id"))
    result: dict[str, Any] = {
        "n": total,
        "seconds": finished - released,
        "rate": total / (finished - released),
        "timed_out": finished - released > 590,
    }
    if system == "b":
        result["succeeded_rows"] = services.scalar(
            "SELECT count(*) FROM jobs_job WHERE status = 'succeeded'"
        )
    if system == "c":
        result["succeeded_rows"] = services.scalar(
            "SELECT count(*) FROM django_celery_results_taskresult WHERE status = 'SUCCESS'"
        )
    if urgent_after is not None:
        result["urgent_start_ms"] = None if urgent_at is None else (urgent_at - released) * 1000
        result["urgent_behind"] = urgent_after
    return result


def _urgent_started(services: Services, system: str, urgent_id: str | None) -> float | None:
    if system == "b":
        at = services.scalar("SELECT started_at FROM jobs_job WHERE id = %s", [urgent_id])
        return None if at is None else float(at.timestamp())
    for raw in services.redis.lrange("bench:stamps", 0, -1):
        tag, when = raw.decode().split(" ")
        if tag == "urgent":
            return float(when)
    return None
