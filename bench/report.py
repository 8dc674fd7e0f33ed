"""The bench's report: the machine, each latency section's tables, and where they are written."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
from contextlib import suppress
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench import retention
from bench.config import NAMES, RESULTS, ROOT
from bench.growth import render as render_growth
from bench.metrics import FLOORS, METRICS

DOCS = ROOT / "docs" / "performance.md"
DOCS_START = "<!-- bench:start -->"
DOCS_END = "<!-- bench:end -->"
PACKAGES = (
    "dramatiq",
    "celery",
    "kombu",
    "django-celery-results",
    "huey",
    "Django",
    "redis",
    "hiredis",
    "psycopg",
    "gunicorn",
)


def machine() -> dict[str, Any]:
    model = ""
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with suppress(OSError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    versions: dict[str, str] = {}
    for dist in PACKAGES:
        with suppress(PackageNotFoundError):
            versions[dist] = version(dist)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
    }


def machine_line(mc: dict[str, Any]) -> str:
    pk = mc["packages"]
    return (
        f"{mc['cores']} cores ({mc['cpu']}), {mc['memory_gib']} GiB, Linux {mc['kernel']}, "
        f"Python {mc['python']}, Redis {mc['services']['redis']}, "
        f"Postgres {mc['services']['postgres']}; Dramatiq {pk.get('dramatiq')}, "
        f"Celery {pk.get('celery')}, django-celery-results {pk.get('django-celery-results')}, "
        f"Huey {pk.get('huey')}"
    )


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "x":
        return f"{value:.2f}x"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "-"
    return f"{fmt(cell['median'])} [{fmt(cell['min'])}-{fmt(cell['max'])}]"


def section_header(section: dict[str, Any], mc: dict[str, Any]) -> list[str]:
    rtt = section["rtt"]
    loads = section["load_before"]
    proxied = section["delay_us"] > 0
    link = (
        f"through bench.proxy, {section['delay_us']:g} µs added each way"
        if proxied
        else "direct, no proxy"
    )
    lines = [
        f"### Links: {section['latency']} ({link})",
        "",
        f"{section['started_at']} to {section['finished_at']}; "
        f"load average before: {loads[0]:.2f} / {loads[1]:.2f} / {loads[2]:.2f} (1/5/15 min); "
        f"round trips the systems see (median of {rtt['samples']}): "
        f"Postgres `SELECT 1` {rtt['postgres_select1_ms']:.3f} ms, "
        f"Redis `PING` {rtt['redis_ping_ms']:.3f} ms.",
        "",
        f"Machine: {machine_line(mc)}.",
    ]
    if proxied and section.get("proxy_cpu"):
        shares = ", ".join(
            f"{s.upper()} {share * 100:.0f} %" for s, share in section["proxy_cpu"].items()
        )
        lines += [
            "",
            f"The two proxies' CPU, as a share of one core over each system's phases "
            f"(median of rounds): {shares}.",
        ]
    return lines


def render_section(section: dict[str, Any], systems: str) -> list[str]:
    summary = section["summary"]
    http_reason = section.get("http_reason") or "n/a (not run)"
    head = ["metric", "unit"] + [f"{s.upper()}: {NAMES[s]}" for s in systems]
    head += ["B ÷ best peer", "B ÷ floor"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for metric in METRICS:
        row = summary["rows"].get(metric.key, {})
        if not row and not (metric.key.startswith("http") and "b" in systems):
            continue
        cells = [metric.label, metric.unit]
        for s in systems:
            if s == "b" and s not in row and metric.key.startswith("http"):
                cells.append(http_reason)
            else:
                cells.append(_cell(row.get(s)))
        ratios = summary["ratios"].get(metric.key, {})
        best = ratios.get("best_peer")
        cells.append(
            "-" if best is None else f"{fmt(ratios['to_best_peer'], 'x')} ({best.upper()})"
        )
        cells.append("-" if ratios.get("to_floor") is None else fmt(ratios["to_floor"], "x"))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| floor | unit | rate | B's row | B ÷ floor |", "|---|---|---|---|---|"]
    labels = {m.key: m.label for m in METRICS}
    for floor in FLOORS:
        cell = summary["floors"].get(floor.key)
        b = summary["rows"].get(floor.compared, {}).get("b")
        ratio = b["median"] / cell["median"] if cell and b and cell["median"] else None
        lines.append(
            f"| {floor.label} | {floor.unit} | {_cell(cell)} | {labels[floor.compared]} "
            f"| {fmt(ratio, 'x') if ratio is not None else '-'} |"
        )
    lines += ["", "| target | B ÷ other | B | other | verdict |", "|---|---|---|---|---|"]
    for t in section["targets"]:
        unit = t["unit"]
        lines.append(
            f"| {t['target']} | {fmt(t['ratio'], 'x')} | {fmt(t['b'])} {unit} "
            f"| {fmt(t['other'])} {unit} ({t['other_name']}) | **{t['verdict']}** |"
        )
    return lines + retention.render(section)


def render_overhead(overhead: dict[str, Any] | None) -> list[str]:
    if not overhead:
        return []
    delay = overhead["delay_us"]
    cols = ["direct", "proxy_0us", f"proxy_{delay:g}us"]
    lines = [
        "### The proxy's own cost",
        "",
        f"| round trip (median of 200, ms) | direct | bench.proxy, 0 µs | bench.proxy, {delay:g} µs each way |",
        "|---|---|---|---|",
    ]
    for key, label in (
        ("postgres_select1_ms", "Postgres `SELECT 1`"),
        ("redis_ping_ms", "Redis `PING`"),
    ):
        lines.append(f"| {label} | " + " | ".join(f"{overhead[c][key]:.3f}" for c in cols) + " |")
    direct, proxied = overhead.get("pipelined_direct_rps"), overhead.get("pipelined_proxied_rps")
    if direct and proxied:
        lines += [
            "",
            f"Pipelined throughput (redis-benchmark SET and GET, 16 clients, 32 deep): "
            f"{direct:,.0f} requests/s direct, {proxied:,.0f} through the proxy at "
            f"{delay:g} µs, the proxy then using "
            f"{overhead['pipelined_proxy_cpu_share'] * 100:.0f} % of one core.",
        ]
    return lines


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"Run {result['started_at']} to {result['finished_at']}: {cfg['rounds']} interleaved "
        f"round(s) per section, scale {cfg['scale']}, systems {cfg['systems'].upper()}; "
        "medians [min-max]. Ratios are B ÷ the other: above 1 is better for rates, worse for "
        "ms and MiB. Full figures: `bench/results/latest.json`.",
        "",
    ]
    lines += render_overhead(result.get("proxy_overhead"))
    for section in result["sections"]:
        lines += ["", *section_header(section, result["machine"]), ""]
        lines += render_section(section, cfg["systems"])
        lines += render_growth(section, result.get("growth"))
    if result.get("streams"):
        lines += [
            "",
            "### Event streams (bench/streams.py)",
            "",
            *STREAMS_HEADER,
            streams_row(result["streams"]),
        ]
    return "\n".join(lines).strip() + "\n"


STREAMS_HEADER = [
    "| row | held | event latency p50 / p99 | GET /api/v1/jobs/ p95 meanwhile | memory per stream |",
    "|---|---:|---:|---:|---:|",
]


def streams_row(result: dict[str, Any]) -> str:
    """The "1,000 concurrent streams" row (one events-service process)."""
    return (
        f"| {result['streams_asked']:,} concurrent streams | {result['streams_held']:,} "
        f"| {result['latency_p50_ms']:.0f} / {result['latency_p99_ms']:.0f} ms "
        f"| {result['list_p95_ms']:.0f} ms | {result['kib_per_stream']:.0f} KiB |"
    )


def write(result: dict[str, Any], *, docs: bool) -> str:
    """latest.json (and a dated copy), latest.md, and docs/performance.md's table if asked."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = re.sub(r"[^0-9T]", "", result["finished_at"])[:15]
    (RESULTS / f"run-{stamp}.json").write_text(json.dumps(result, indent=2, default=str))
    shutil.copyfile(RESULTS / f"run-{stamp}.json", RESULTS / "latest.json")
    text = render(result)
    (RESULTS / "latest.md").write_text(text)
    if docs:
        update_docs(text)
    return text


def update_docs(text: str) -> None:
    """Replace docs/performance.md's results between its markers."""
    page = DOCS.read_text()
    if DOCS_START not in page or DOCS_END not in page:
        return
    before = page.split(DOCS_START, 1)[0]
    after = page.split(DOCS_END, 1)[1]
    DOCS.write_text(f"{before}{DOCS_START}\n{text}{DOCS_END}{after}")
