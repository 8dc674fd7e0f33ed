"""Run the chaos scenarios and print their table (``make chaos``).

Usage:

    .venv/bin/python scripts/chaos.py [--short] [scenario ...]

Scenarios: postgres-restart, sentinel-failover, cut-redis, cut-postgres (all by
default). Each starts its own private Postgres cluster, Redis servers and
proxies, then a web server, a scheduler and two 8-thread workers, and soaks
2,000 jobs (``--short``: 150, with shorter faults, as ``make test`` does)
through its fault. Needs ``make install`` (the pgserver wheel's Postgres) and
``redis-server``; nothing else is touched. Exits 1 unless every scenario ends
with every job succeeded exactly once.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chaos.scenarios import FULL, SCENARIOS, SHORT, Bench, table  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)} (default: all)"
    )
    parser.add_argument("--short", action="store_true", help="the short form of make test")
    parser.add_argument("--keep", action="store_true", help="keep the logs' directory")
    args = parser.parse_args()
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    size = SHORT if args.short else FULL
    directory = Path(tempfile.mkdtemp(prefix="chaos-"))
    directory.chmod(0o755)
    results = []
    bench = Bench(directory)
    try:
        for name in args.scenarios or list(SCENARIOS):
            print(f"running {name} ...", flush=True)
            result = SCENARIOS[name](bench, size)
            results.append(result)
            extra = result.notes + [f"dead: {p}" for p in result.dead_processes]
            extra += [f"no 'back' line: {p}" for p in result.silent_processes]
            print(
                f"  {result.scenario}: {result.seconds} s, {result.refused} submission(s) "
                f"refused with 503 during the fault, {result.half_made} half-made"
                + ("; " + "; ".join(extra) if extra else ""),
                flush=True,
            )
    finally:
        bench.close()
        if args.keep:
            print(f"logs: {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    print(table(results))
    return 0 if all(r.clean for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
