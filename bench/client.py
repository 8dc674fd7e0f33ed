"""The bench's client side: sends jobs to one system and times it.

``python -m bench.client <system> <action> [options]``, run by ``bench/run.py``
in a fresh process per call (each system needs its own settings and links). The
last line of stdout is a JSON object with the measurement.

Systems: ``a`` raw Dramatiq, ``b`` this project, ``c`` Celery, ``d`` Huey
(``bench/systems/``). Actions:
  setup            (b) create the bench organization (limits raised) and an API key
  stage            enqueue the throughput workload into a staging namespace
  submit-bulk      bulk submission rate (a: pipelined Lua; b: job_submit_many;
                   c: group; d: Huey's enqueue, pipelined)
  submit-single    one-at-a-time submission rate (a Python loop)
  latency          enqueue→start latency with idle workers, and after 2 s idle
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from bench.systems import a, b, c, d
from bench.systems.common import Action, emit

ACTIONS: dict[str, dict[str, Action]] = {
    "a": a.ACTIONS,
    "b": b.ACTIONS,
    "c": c.ACTIONS,
    "d": d.ACTIONS,
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.client")
    parser.add_argument("system", choices=sorted(ACTIONS))
    parser.add_argument("action")
    parser.add_argument("--n", type=int, default=1_000)
    parser.add_argument("--kind", choices=["noop", "sleep"], default="noop")
    parser.add_argument("--sleep-ms", type=int, default=10)
    parser.add_argument("--urgent-after", type=int, default=None)
    parser.add_argument("--gap-ms", type=float, default=20.0)
    parser.add_argument("--idle-samples", type=int, default=3)
    args = parser.parse_args(argv)
    action = ACTIONS[args.system].get(args.action)
    if action is None:
        parser.error(f"system {args.system!r} has no action {args.action!r}")
    emit(action(args))


if __name__ == "__main__":
    main()
