"""Server-side SVG geometry for the dashboard chart (no JavaScript, no CDN).

The template draws what this computes; every value here is a number or a
label we format ourselves, and the template still escapes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobs.selectors.dashboard import MinuteCount

WIDTH = 1440  # one unit per minute of a 24-hour window
HEIGHT = 200
TOP = 10


@dataclass(frozen=True)
class Bar:
    x: int
    y: float
    height: float
    title: str


@dataclass
class ThroughputChart:
    """Stacked bars (succeeded, failed) per minute and a failure-rate line.

    Parameters:
      peak: the largest per-minute count, the top of the bar scale.
      rate_path: SVG path of the failure rate (0-100 %), broken where nothing finished.
    """

    width: int = WIDTH
    height: int = HEIGHT
    peak: int = 0
    succeeded_bars: list[Bar] = field(default_factory=list)
    failed_bars: list[Bar] = field(default_factory=list)
    rate_path: str = ""
    ticks: list[tuple[int, str]] = field(default_factory=list)
    total_finished: int = 0
    total_failed: int = 0

    @property
    def failure_rate_percent(self) -> float | None:
        if not self.total_finished:
            return None
        return round(100 * self.total_failed / self.total_finished, 1)


def throughput_chart(series: list[MinuteCount]) -> ThroughputChart:
    """Lay a per-minute series out on a WIDTH x HEIGHT canvas."""
    chart = ThroughputChart(width=max(len(series), 1))
    chart.peak = max((m.finished for m in series), default=0)
    chart.total_finished = sum(m.finished for m in series)
    chart.total_failed = sum(m.failed for m in series)
    usable = HEIGHT - TOP
    scale = usable / chart.peak if chart.peak else 0
    path: list[str] = []
    pen_down = False
    for x, minute in enumerate(series):
        label = minute.minute.strftime("%H:%M")
        if minute.minute.minute == 0 and minute.minute.hour % 3 == 0:
            chart.ticks.append((x, minute.minute.strftime("%H:%M")))
        if not minute.finished:
            pen_down = False
            continue
        ok = minute.finished - minute.failed
        ok_height = round(ok * scale, 2)
        failed_height = round(minute.failed * scale, 2)
        if ok:
            chart.succeeded_bars.append(
                Bar(x, round(HEIGHT - ok_height, 2), ok_height, f"{label}: {ok} succeeded")
            )
        if minute.failed:
            chart.failed_bars.append(
                Bar(
                    x,
                    round(HEIGHT - ok_height - failed_height, 2),
                    failed_height,
                    f"{label}: {minute.failed} failed",
                )
            )
        rate = minute.failed / minute.finished
        y = round(HEIGHT - rate * usable, 2)
        # A lone minute still shows: a new segment starts with a short stroke.
        path.append(f"L{x},{y}" if pen_down else f"M{x},{y} l0.5,0")
        pen_down = True
    chart.rate_path = " ".join(path)
    return chart
