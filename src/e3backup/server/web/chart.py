"""Hand-drawn SVG charts of a job's history: one point per finished backup run.

Server-rendered, no script and no chart library. The x axis is the run order (oldest left), so
runs at irregular times still get evenly spaced points; each point's tooltip gives the run, its
time and its value. The markup is built here with every text escaped and returned as Markup.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

from e3backup.server.web import format as fmt

WIDTH, HEIGHT = 600, 200
LEFT, RIGHT, TOP, BOTTOM = 70, 16, 14, 30


@dataclass(frozen=True)
class ChartPoint:
    run_id: int
    at: datetime
    value: float
    status: str


def line_chart(points: Sequence[ChartPoint], title: str, label: Callable[[float], str], css_class: str = "") -> Markup:
    """An SVG line chart of ``points`` (oldest first); ``label`` formats values for axis and tooltips."""
    n = len(points)
    top = max((p.value for p in points), default=0.0) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w / 2 if n == 1 else plot_w * i / (n - 1))

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / (top * 1.1))

    parts = [
        f'<svg class="chart {escape(css_class)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}: {n} finished run{"s" if n != 1 else ""}" '
        f'preserveAspectRatio="xMidYMid meet" data-points="{n}">',
        f"<title>{escape(title)}</title>",
    ]
    for v in (0.0, top):  # horizontal grid at zero and at the maximum, labelled
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>')
        parts.append(
            f'<text class="axis" x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{escape(label(v))}</text>'
        )
    if n:
        parts.append(f'<text class="axis" x="{LEFT}" y="{HEIGHT - 8}">{escape(points[0].at.strftime("%b %d"))}</text>')
        if n > 1:
            parts.append(
                f'<text class="axis" x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end">'
                f"{escape(points[-1].at.strftime('%b %d'))}</text>"
            )
    if n > 1:
        coords = " ".join(f"{x(i):.1f},{y(p.value):.1f}" for i, p in enumerate(points))
        parts.append(f'<polyline class="line" points="{coords}"/>')
    for i, p in enumerate(points):
        tip = f"Run #{p.run_id} · {fmt.when(p.at)} · {label(p.value)} ({p.status})"
        parts.append(
            f'<circle class="pt pt-{escape(p.status)}" cx="{x(i):.1f}" cy="{y(p.value):.1f}" r="5" '
            f'data-run-id="{p.run_id}"><title>{escape(tip)}</title></circle>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


__all__ = ["ChartPoint", "line_chart"]
