"""The report's curves: each task's series (metrics.jsonl) step by step, pruned tasks dashed (docs/design.md §2a)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from batchsweep.report.svgplot import Axis, Chart, esc, finite, fmt
from batchsweep.text import duration

if TYPE_CHECKING:
    import pandas as pd


MAX_CURVES = 400  # beyond this the curves chart draws a sample (the pruned and the best always among them)


def svg(lines: Sequence[tuple[str, Sequence[tuple[float, float]], bool]], *, metric_label: str,
           width: float = 1160, height: float = 320) -> str:
    """One line per task over its steps; a pruned task's line is dashed and ends where it was stopped."""
    c = Chart("curves", f"{metric_label} by step, one line per task (dashed: stopped early)", width, height)
    pts = [(x, y) for _, line, _ in lines for x, y in line if finite(x) and finite(y)]
    if not pts:
        c.note(f"no series of {metric_label}")
        return c.svg()
    ml, mr, mt, mb = 58, 16, 30, 44
    xax = Axis(ml, width - mr, lo=min(x for x, _ in pts), hi=max(x for x, _ in pts), pad=0.02)
    yax = Axis(height - mb, mt, lo=min(y for _, y in pts), hi=max(y for _, y in pts), pad=0.06)
    c.y_axis(yax, ml, metric_label, grid_to=width - mr)
    c.x_axis(xax, height - mb, "step")
    for label, line, pruned in lines:
        shown = [(x, y) for x, y in line if finite(x) and finite(y)]
        if not shown:
            continue
        last = shown[-1]
        c.add("polyline", tip=f"{label}: {fmt(last[1])} at step {fmt(last[0])}" + (" (pruned)" if pruned else ""),
              points=" ".join(f"{xax(x):.1f},{yax(y):.1f}" for x, y in shown),
              class_="curve pruned" if pruned else "curve")
    if len(lines) == MAX_CURVES:
        c.text(width - mr, mt - 12, f"a sample of {MAX_CURVES} tasks", anchor="end")
    return c.svg()


def section(df: pd.DataFrame, series: dict[int, list[dict[str, Any]]], chosen: str, summary: dict[str, Any]) -> str:
    """Each task's series of the chosen metric (or of the stop rule's), pruned tasks dashed."""
    if not series:
        return ""
    names = {k for records in series.values() for r in records for k in r if k not in ("step", "t")}
    metric = next((m for m in (chosen, summary.get("stop_metric")) if m and m in names), None) or min(names, default="")
    if not metric:
        return ""
    status = dict(zip(df["task"].tolist(), df["status"].astype(str).tolist())) if "task" in df.columns else {}
    order = sorted(series, key=lambda i: (status.get(i) != "pruned", i))
    lines = [(f"task {i}", [(float(r["step"]), float(r[metric])) for r in series[i] if metric in r],
              status.get(i) == "pruned") for i in order[: MAX_CURVES]]
    saved = summary.get("stop_saved")
    cap = (f" Stopping saved ~{duration(saved)} of task time (a pruned task would have run about as long as the "
           "median task that ran to the end)." if saved else "")
    return ('<h2>Curves</h2><div class="full">' + svg(lines, metric_label=metric) + "</div>"
            + f'<p class="cap">Each task\'s {esc(metric)} as it reported it, step by step; a dashed line is a task the '
              f"stop rule pruned, drawn up to where it stopped.{cap}</p>")
