"""The floors: what the bare drivers do over the same links, with no job system at all.

``python -m bench.floors --n N`` (run by ``bench/run.py`` with a system's links) prints
one JSON line with three rates, each a Python loop of N iterations after a few untimed:

- postgres: one ``INSERT`` of a job-shaped row into ``floor_job`` per iteration, with
  autocommit (the statement is its own transaction: one round trip, committed);
- redis: one ``EVALSHA`` per message, of a script shaped like Dramatiq's enqueue
  (``HSET`` the body, ``RPUSH`` the id);
- submission: both of those per iteration, one after the other.

``floor_job`` is ``jobs_job``'s copy (columns, defaults, checks, indexes, and its
foreign keys, which ``LIKE`` leaves out); its rows copy a row B wrote
(``floor_job_template``), each with a new id. The HTTP floor (``/healthz`` on the
same server) is measured with the HTTP rows (``bench/http_bench.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import redis
from psycopg import sql
from psycopg.types.json import Jsonb

from bench.services import Services, conninfo

ENQUEUE_LUA = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
"""
WARMUP = 20


def prepare_tables(services: Services) -> None:
    """(Re)create ``floor_job`` like ``jobs_job`` now, and its template row from B's last job."""
    pg = services.pg
    pg.execute("DROP TABLE IF EXISTS floor_job, floor_job_template")
    pg.execute("CREATE TABLE floor_job (LIKE jobs_job INCLUDING ALL)")
    fks = pg.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'jobs_job'::regclass AND contype = 'f' ORDER BY conname"
    ).fetchall()
    for i, (definition,) in enumerate(fks):
        definition = definition.replace("REFERENCES jobs_job(", "REFERENCES floor_job(")
        pg.execute(f"ALTER TABLE floor_job ADD CONSTRAINT floor_job_fk_{i} {definition}")
    pg.execute(
        "CREATE TABLE floor_job_template AS SELECT * FROM jobs_job ORDER BY created_at DESC LIMIT 1"
    )
    if not services.scalar("SELECT count(*) FROM floor_job_template"):
        raise RuntimeError("no job row of B to copy for the Postgres floor")


def _rate(n: int, step: Callable[[int], None]) -> dict[str, Any]:
    for i in range(WARMUP):
        step(i)
    began, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        step(i)
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {"n": n, "seconds": elapsed, "rate": n / elapsed, "client_cpu_seconds": cpu}


def _pg_step(conn: psycopg.Connection[Any]) -> Callable[[int], None]:
    cur = conn.execute("SELECT * FROM floor_job_template LIMIT 1")
    columns = [d.name for d in cur.description or ()]
    template = list(cur.fetchone() or ())
    values = [Jsonb(v) if isinstance(v, dict | list) else v for v in template]
    id_at = columns.index("id")
    statement = sql.SQL("INSERT INTO floor_job ({}) VALUES ({})").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join([sql.Placeholder()] * len(columns)),
    )

    def step(i: int) -> None:
        values[id_at] = uuid.uuid4()
        conn.execute(statement, values, prepare=True)

    return step


def _redis_step(client: redis.Redis) -> Callable[[int], None]:
    script = client.register_script(ENQUEUE_LUA)

    def step(i: int) -> None:
        message_id = str(uuid.uuid4())
        body = json.dumps(
            {
                "queue_name": "default",
                "actor_name": "noop",
                "args": [],
                "kwargs": {},
                "options": {"redis_message_id": message_id},
                "message_id": message_id,
                "message_timestamp": int(time.time() * 1000),
            }
        )
        script(keys=["floor:default.msgs", "floor:default"], args=[message_id, body])

    return step


def measure(database_url: str, redis_url: str, n: int) -> dict[str, Any]:
    info, dbname = conninfo(database_url)
    client = redis.Redis.from_url(redis_url)
    with psycopg.connect(info, dbname=dbname, autocommit=True) as conn:
        pg_step, redis_step = _pg_step(conn), _redis_step(client)

        def both(i: int) -> None:
            pg_step(i)
            redis_step(i)

        return {
            "postgres": _rate(n, pg_step),
            "redis": _rate(n, redis_step),
            "submission": _rate(n, both),
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floors")
    parser.add_argument("--n", type=int, default=2_000)
    ns = parser.parse_args(argv)
    result = measure(os.environ["DATABASE_URL"], os.environ["REDIS_URL"], ns.n)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
