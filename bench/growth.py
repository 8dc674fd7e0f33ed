"""Flat as the ledger grows: B's rows on a ledger pre-filled with finished jobs.

A database of its own (``BENCH_GROWTH_DATABASE_URL``, by default the bench
database's name plus ``_growth``) holds N finished jobs of other organizations
(``bench/ledger_fill.py``: loaded once by ``COPY``, reused by later runs). In
every round of every latency section, after the floors, B runs on it: bulk
submission, single submission (Python loop), the no-op processing row, then
the admin pages of ``bench/admin_speed.py`` (the list, its filters, a job's
detail, the dashboard). Between phases only B's own rows are deleted (the
bench organization's, and system jobs created since the fill); the pre-filled
rows stay. Each row is printed with its ratio to B's empty-ledger figure of
the same section; the targets: every processing and submission row ≥ 0.9x its
empty-ledger figure, the dashboard ≤ 500 ms.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.config import Config, Progress
from bench.ledger_fill import ORGANIZATIONS, prefill
from bench.metrics import Getter, get
from bench.services import Services, client, migrate, run_json
from bench.staged import run_staged
from bench.workers import start_workers, stop_workers

RATIO_BOUND = 0.9
DASHBOARD_BOUND_MS = 500.0
ADMIN_RUNS = 5
STEPS_PER_ROUND = 5


@dataclasses.dataclass(frozen=True)
class Row:
    key: str  # also the METRICS key of B's empty-ledger figure
    label: str
    unit: str
    getter: Getter


ROWS = [
    Row("submit_bulk", "bulk submission", "jobs/s", get("submit_bulk", "rate")),
    Row("submit_single", "single submission, Python loop", "jobs/s", get("submit_single", "rate")),
    Row("noop", "processing, 20k no-op", "jobs/s", get("noop", "rate")),
]


def with_database(url: str, name: str) -> str:
    """``url`` naming the database ``name`` (same server, user and port)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def growth_database_url(database_url: str) -> str:
    """BENCH_GROWTH_DATABASE_URL, else the bench database's name with ``_growth``."""
    explicit = os.environ.get("BENCH_GROWTH_DATABASE_URL")
    if explicit:
        return explicit
    name = urlsplit(database_url).path.lstrip("/") or "tbx_bench"
    return with_database(database_url, f"{name}_growth")


class LedgerServices(Services):
    """The bench's direct links to the growth database: resets delete only B's own rows."""

    def __init__(self, cfg: Config, org_id: int, filled_at: Any) -> None:
        super().__init__(cfg)
        self.org_id = org_id
        self.filled_at = filled_at

    def reset(self) -> None:
        self.redis.flushdb()
        ids = [
            row[0]
            for row in self.pg.execute(
                "SELECT id FROM jobs_job WHERE organization_id = %s "
                "UNION ALL SELECT id FROM jobs_job WHERE organization_id IS NULL "
                "AND created_at > %s",
                [self.org_id, self.filled_at],
            )
        ]
        with self.pg.transaction():
            self.pg.execute("DELETE FROM jobs_jobattempt WHERE job_id = ANY(%s)", [ids])
            self.pg.execute("DELETE FROM jobs_jobevent WHERE job_id = ANY(%s)", [ids])
            self.pg.execute("DELETE FROM jobs_providerdelivery WHERE job_id = ANY(%s)", [ids])
            self.pg.execute("DELETE FROM jobs_job WHERE id = ANY(%s)", [ids])
            self.pg.execute("DELETE FROM jobs_joboutbox")

    def own_succeeded(self) -> int:
        return int(
            self.scalar(
                "SELECT count(*) FROM jobs_job WHERE organization_id = %s AND status = 'succeeded'",
                [self.org_id],
            )
        )


class Growth:
    """The pre-filled ledger and B's rows on it, one round at a time."""

    def __init__(self, base: Config, rows: int, *, refill: bool) -> None:
        self.rows = rows
        self.refill = refill
        self.url = growth_database_url(base.database_url)
        self.dbname = urlsplit(self.url).path.lstrip("/")
        self.base = dataclasses.replace(base, database_url=self.url, child_database_url="")
        self.fill: dict[str, Any] = {}
        self.org_id = 0

    def prepare(self, progress: Progress) -> dict[str, Any]:
        """Create, migrate and fill the database if needed; the bench organization in it."""
        Services(self.base).ensure_database()
        progress.note(f"growth: migrating {self.dbname}")
        migrate(self.base, celery=False)
        self.fill = prefill(self.url, self.rows, refill=self.refill, log=progress.note)
        if self.fill["reused"]:
            progress.note(
                f"growth: {self.dbname} already holds {self.rows:,} jobs "
                f"(filled {self.fill['filled_at']:%Y-%m-%d %H:%M} UTC in "
                f"{self.fill['seconds']:.0f} s); --refill loads them again"
            )
        self.org_id = int(client(self.base, "b", "setup")["organization_id"])
        services = self.services(self.base)
        services.reset()  # rows a run that stopped half-way left behind
        services.pg.execute("VACUUM ANALYZE jobs_job")
        services.pg.execute("VACUUM ANALYZE jobs_jobattempt")
        return {
            "database": self.dbname,
            "rows": self.rows,
            "filled_at": str(self.fill["filled_at"]),
            "fill_seconds": self.fill["seconds"],
            "reused": self.fill["reused"],
            "jobs_job_bytes": services.scalar("SELECT pg_total_relation_size('jobs_job')"),
        }

    def config(self, cfg: Config) -> Config:
        """A section's config with every link on the growth database (through its proxy)."""
        child = with_database(cfg.child_database_url or cfg.database_url, self.dbname)
        return dataclasses.replace(cfg, database_url=self.url, child_database_url=child)

    def services(self, cfg: Config) -> LedgerServices:
        marker = self.fill.get("filled_at")
        return LedgerServices(cfg, self.org_id, marker)

    def run_round(self, section_cfg: Config, rnd: int, progress: Progress) -> dict[str, Any]:
        """B's growth rows, one round."""
        cfg = self.config(section_cfg)
        services = self.services(cfg)
        name = f"{cfg.latency} · round {rnd}/{cfg.rounds} · B on a {self.rows:,}-job ledger"
        out: dict[str, Any] = {"round": rnd, "load_before": os.getloadavg()[0]}
        services.reset()
        progress.step(f"{name}: bulk submission of {cfg.bulk_jobs:,} jobs")
        out["submit_bulk"] = client(cfg, "b", "submit-bulk", "--n", str(cfg.bulk_jobs))
        services.reset()
        progress.step(f"{name}: single submission of {cfg.single_jobs:,} jobs")
        out["submit_single"] = client(cfg, "b", "submit-single", "--n", str(cfg.single_jobs))
        services.reset()
        progress.step(f"{name}: starting its workers")
        workers = start_workers(cfg, "b", f"{cfg.latency}-r{rnd}-ledger")
        try:
            time.sleep(1.5)  # let every consumer settle into its idle polling
            progress.step(f"{name}: {cfg.noop_jobs:,} no-op jobs")
            noop = run_staged(cfg, services, "b", kind="noop", n=cfg.noop_jobs)
            noop["succeeded_rows"] = services.own_succeeded()
            out["noop"] = noop
        finally:
            stop_workers(workers)
        services.reset()
        progress.step(f"{name}: admin pages ({ADMIN_RUNS} runs each)")
        out["admin"] = run_json(
            cfg,
            ["bench/admin_speed.py", "--measure-only", "--json", "--runs", str(ADMIN_RUNS)],
            BENCH_DATABASE_URL=cfg.child_database_url,
        )["pages"]
        return out


def _cell(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(runs: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
    """Medians over rounds, each row's ratio to B's empty-ledger median, and the targets."""
    rows: dict[str, Any] = {}
    targets: list[dict[str, Any]] = []
    for row in ROWS:
        cell = _cell([v for r in runs if (v := row.getter(r)) is not None])
        empty = (summary["rows"].get(row.key) or {}).get("b")
        empty_median = None if empty is None else float(empty["median"])
        ratio = None if cell is None or not empty_median else cell["median"] / empty_median
        rows[row.key] = {"cell": cell, "empty": empty_median, "ratio": ratio}
        targets.append(
            {
                "target": f"{row.label} on the full ledger ≥ {RATIO_BOUND}x the empty ledger's",
                "ratio": ratio,
                "b": None if cell is None else cell["median"],
                "other": empty_median,
                "other_name": "B, empty ledger",
                "unit": row.unit,
                "verdict": _verdict(ratio, RATIO_BOUND, at_least=True),
            }
        )
    pages: dict[str, Any] = {}
    for r in runs:
        for label, timing in (r.get("admin") or {}).items():
            pages.setdefault(label, []).append(float(timing["median_ms"]))
    admin = {label: _cell(values) for label, values in pages.items()}
    dashboard = admin.get("dashboard")
    dash_ms = None if dashboard is None else float(dashboard["median"])
    ratio = None if dash_ms is None else dash_ms / DASHBOARD_BOUND_MS
    targets.append(
        {
            "target": f"admin dashboard on the full ledger ≤ {DASHBOARD_BOUND_MS:.0f} ms",
            "ratio": ratio,
            "b": dash_ms,
            "other": DASHBOARD_BOUND_MS,
            "other_name": "bound",
            "unit": "ms",
            "verdict": _verdict(ratio, 1.0, at_least=False),
        }
    )
    return {"rows": rows, "admin": admin, "targets": targets}


def _verdict(ratio: float | None, bound: float, *, at_least: bool) -> str:
    if ratio is None:
        return "not measured"
    return "met" if (ratio >= bound if at_least else ratio <= bound) else "missed"


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _range(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "n/a"
    return f"{_fmt(cell['median'])} [{_fmt(cell['min'])}-{_fmt(cell['max'])}]"


def render(section: dict[str, Any], info: dict[str, Any] | None) -> list[str]:
    """A section's growth table (empty when the section ran without it)."""
    growth = section.get("growth")
    if not growth or not info:
        return []
    gib = (info.get("jobs_job_bytes") or 0) / 1024**3
    lines = [
        "",
        f"#### The same rows on a ledger of {info['rows']:,} finished jobs (bench/growth.py)",
        "",
        f"`jobs_job` {gib:.1f} GiB with its indexes and TOAST: jobs of {ORGANIZATIONS} other "
        "organizations over 90 days, with their attempts. B's medians [min-max] there, "
        "and ÷ its empty-ledger median of this section.",
        "",
        "| row | unit | full ledger | empty ledger | full ÷ empty | target | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    verdicts = {t["target"]: t for t in growth["targets"]}
    for row in ROWS:
        data = growth["rows"][row.key]
        target = next(t for label, t in verdicts.items() if label.startswith(row.label))
        lines.append(
            f"| {row.label} | {row.unit} | {_range(data['cell'])} | {_fmt(data['empty'])} "
            f"| {_fmt(data['ratio'], 'x')} | ≥ {RATIO_BOUND}x | **{target['verdict']}** |"
        )
    dashboard = growth["targets"][-1]
    for label, cell in growth["admin"].items():
        is_dash = label == "dashboard"
        lines.append(
            f"| admin: {label} | ms | {_range(cell)} | - | - "
            f"| {'≤ 500 ms' if is_dash else '-'} "
            f"| {'**' + dashboard['verdict'] + '**' if is_dash else '-'} |"
        )
    return lines
