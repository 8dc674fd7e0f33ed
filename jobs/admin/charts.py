"""Server-side SVG geometry for the dashboard chart, over the window the user picks.

The template draws what this computes; every value here is a number or a
label we format ourselves, and the template still escapes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from jobs.selectors.dashboard import MinuteCount

WIDTH = 1440  # the chart's width in SVG units, whatever the number of buckets
HEIGHT = 200
TOP = 10


@dataclass(frozen=True)
class ChartWindow:
    """A span the dashboard chart can show.

    Parameters:
      name: the ``?window=`` value.
      label: how the page names it ("the last hour").
      button: the button's text ("1 h").
      span: how far back the chart reaches.
      bucket: one bar's time (a minute or an hour).
      tick: the axis label of a bucket start, or None for no tick there.
      title_format: strftime format of a bar's tooltip time.
    """

    name: str
    label: str
    button: str
    span: timedelta
    bucket: timedelta
    tick: Callable[[datetime], str | None]
    title_format: str

    @property
    def bucket_label(self) -> str:
        return "hour" if self.bucket == timedelta(hours=1) else "minute"


WINDOWS = {
    window.name: window
    for window in (
        ChartWindow(
            "1h", "the last hour", "1 h", timedelta(hours=1), timedelta(minutes=1),
            lambda t: t.strftime("%H:%M") if t.minute % 10 == 0 else None, "%H:%M",
        ),
        ChartWindow(
            "24h", "the last 24 hours", "24 h", timedelta(hours=24), timedelta(minutes=1),
            lambda t: t.strftime("%H:%M") if t.minute == 0 and t.hour % 3 == 0 else None,
            "%H:%M",
        ),
        ChartWindow(
            "7d", "the last 7 days", "7 d", timedelta(days=7), timedelta(hours=1),
            lambda t: t.strftime("%a %d") if t.hour == 0 else None, "%a %d %H:00",
        ),
    )
}  # fmt: skip
DEFAULT_WINDOW = "24h"


def chart_window(name: str | None) -> ChartWindow:
    """The window ``?window=`` names; the default one for anything else."""
    return WINDOWS.get(name or "", WINDOWS[DEFAULT_WINDOW])


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    height: float
    title: str
    width: float = 1


@dataclass
class ThroughputChart:
    """Stacked bars (succeeded, failed) per bucket and a failure-rate line.

    Parameters:
      peak: the largest per-bucket count, the top of the bar scale.
      rate_path: SVG path of the failure rate (0-100 %), broken where nothing finished.
    """

    width: int = WIDTH
    height: int = HEIGHT
    peak: int = 0
    succeeded_bars: list[Bar] = field(default_factory=list)
    failed_bars: list[Bar] = field(default_factory=list)
    rate_path: str = ""
    ticks: list[tuple[float, str]] = field(default_factory=list)
    total_finished: int = 0
    total_failed: int = 0

    @property
    def failure_rate_percent(self) -> float | None:
        if not self.total_finished:
            return None
        return round(100 * self.total_failed / self.total_finished, 1)


def throughput_chart(
    series: list[MinuteCount], window: ChartWindow | None = None
) -> ThroughputChart:
    """Lay a series out on a WIDTH x HEIGHT canvas, one bar per bucket."""
    window = window or WINDOWS[DEFAULT_WINDOW]
    chart = ThroughputChart()
    unit = WIDTH / max(len(series), 1)
    chart.peak = max((m.finished for m in series), default=0)
    chart.total_finished = sum(m.finished for m in series)
    chart.total_failed = sum(m.failed for m in series)
    usable = HEIGHT - TOP
    scale = usable / chart.peak if chart.peak else 0
    path: list[str] = []
    pen_down = False
    for index, minute in enumerate(series):
        x = round(index * unit, 2)
        label = minute.minute.strftime(window.title_format)
        tick = window.tick(minute.minute)
        if tick:
            chart.ticks.append((x, tick))
        if not minute.finished:
            pen_down = False
            continue
        ok = minute.finished - minute.failed
        ok_height = round(ok * scale, 2)
        failed_height = round(minute.failed * scale, 2)
        if ok:
            chart.succeeded_bars.append(
                Bar(x, round(HEIGHT - ok_height, 2), ok_height, f"{label}: {ok} succeeded", unit)
            )
        if minute.failed:
            chart.failed_bars.append(
                Bar(
                    x,
                    round(HEIGHT - ok_height - failed_height, 2),
                    failed_height,
                    f"{label}: {minute.failed} failed",
                    unit,
                )
            )
        rate = minute.failed / minute.finished
        y = round(HEIGHT - rate * usable, 2)
        # A lone bucket still shows: a new segment starts with a short stroke.
        path.append(f"L{x:g},{y}" if pen_down else f"M{x:g},{y} l{max(unit, 1) / 2:g},0")
        pen_down = True
    chart.rate_path = " ".join(path)
    return chart
