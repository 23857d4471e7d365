"""The report's curves: each task's series (metrics.jsonl) step by step, pruned tasks dashed (docs/design.md
§2a)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchsweep.report.svgplot import Axis, Chart, esc, finite, fmt, label_of
from batchsweep.text import duration

if TYPE_CHECKING:
    import pandas as pd


MAX_CURVES = 400  # beyond this the curves chart draws a sample (the pruned and the best always among them)


# values spanning more than two decades get a log y axis: one diverged curve flattens no others
LOG_SPAN = 100.0


@dataclass
class Curve:
    """One task's line: who it is (task and params, for the hover), its points, and why it stopped early."""

    label: str
    points: Sequence[tuple[float, float]]
    pruned: bool = False
    why: str = ""  # a pruned task's reason (`pruned at step 3 by the median rule (val_loss=0.91)`)
    task: Any = None


def svg(lines: Sequence[Curve], *, metric_label: str, width: float = 1160, height: float = 320) -> str:
    """One line per task over its steps; a pruned task's line is dashed, ends where it was stopped and carries
    a marker there saying at which step and why. The y axis is logarithmic when every value is positive and
    they span more than LOG_SPAN."""
    pts = [(x, y) for line in lines for x, y in line.points if finite(x) and finite(y)]
    lo_y, hi_y = (min(y for _, y in pts), max(y for _, y in pts)) if pts else (0.0, 1.0)
    log = lo_y > 0 and hi_y / lo_y > LOG_SPAN
    title = f"{metric_label} by step, one line per task (dashed: stopped early)" + (
        ", log scale" if log else ""
    )
    c = Chart("curves", title, width, height, **({"data-log": "y"} if log else {}))
    if not pts:
        c.note(f"no series of {metric_label}")
        return c.svg()
    ml, mr, mt, mb = 58, 16, 30, 44
    xax = Axis(ml, width - mr, lo=min(x for x, _ in pts), hi=max(x for x, _ in pts), pad=0.02)
    yax = Axis(height - mb, mt, lo=lo_y, hi=hi_y, pad=0.06, log=log)
    c.y_axis(yax, ml, metric_label + (" (log)" if log else ""), grid_to=width - mr)
    c.x_axis(xax, height - mb, "step")
    for line in lines:
        shown = [(x, y) for x, y in line.points if finite(x) and finite(y)]
        if not shown:
            continue
        last = shown[-1]
        where = f"{metric_label} {fmt(last[1])} at step {fmt(last[0])}"
        tip = f"{line.label}: {where}" + (f"; {line.why}" if line.why else " (pruned)" if line.pruned else "")
        task = {"data_task": str(line.task)} if line.task is not None else {}
        c.add("polyline", tip=tip, points=" ".join(f"{xax(x):.1f},{yax(y):.1f}" for x, y in shown),
              class_="curve pruned" if line.pruned else "curve", **task)
        if line.pruned:  # where the rule stopped it, with its reason on hover
            c.add(
                "circle",
                tip=f"{line.label}: {line.why or 'pruned'}",
                cx=xax(last[0]),
                cy=yax(last[1]),
                r=3.5,
                class_="prune-mark",
                **task,
            )
    if len(lines) == MAX_CURVES:
        c.text(width - mr, mt - 12, f"a sample of {MAX_CURVES} tasks", anchor="end")
    return c.svg()


def section(df: pd.DataFrame, series: dict[int, list[dict[str, Any]]], chosen: str, summary: dict[str, Any],
            params: Sequence[str] = ()) -> str:
    """Each task's series of the chosen metric (or of the stop rule's), pruned tasks dashed with their reason;
    each line's hover names the task and its `params`."""
    if not series:
        return ""
    names = {k for records in series.values() for r in records for k in r if k not in ("step", "t")}
    metric = next((m for m in (chosen, summary.get("stop_metric")) if m and m in names), None) or min(
        names, default=""
    )
    if not metric:
        return ""
    tasks = df["task"].tolist() if "task" in df.columns else []
    row_of = {t: i for i, t in enumerate(tasks)}
    status = dict(zip(tasks, df["status"].astype(str).tolist())) if "status" in df.columns else {}
    errors = dict(zip(tasks, df["error"].tolist())) if "error" in df.columns else {}
    shown_params = [p for p in params if p in df.columns]
    values = {p: df[p].tolist() for p in shown_params}

    def label(i: int) -> str:
        row = row_of.get(i)
        named = ", ".join(f"{p}={label_of(values[p][row])}" for p in shown_params) if row is not None else ""
        return f"task {i}" + (f" ({named})" if named else "")

    order = sorted(series, key=lambda i: (status.get(i) != "pruned", i))
    lines = [
        Curve(
            label(i),
            [(float(r["step"]), float(r[metric])) for r in series[i] if metric in r],
            pruned=status.get(i) == "pruned",
            task=i,
            why=str(errors.get(i)) if status.get(i) == "pruned" and isinstance(errors.get(i), str) else "",
        )
        for i in order[:MAX_CURVES]
    ]
    saved = summary.get("stop_saved")
    cap = (
        f" Stopping saved ~{duration(saved)} of task time (a pruned task would have run about as long as the "
        "median task that ran to the end)."
        if saved
        else ""
    )
    # a search's curves are its trials' intermediate values, as Optuna names them
    heading = (
        '<h2 id="curves">Intermediate values</h2>' if "trial" in df.columns else '<h2 id="curves">Curves</h2>'
    )
    return (
        heading
        + '<div class="full">'
        + svg(lines, metric_label=metric)
        + "</div>"
        + f'<p class="cap">Each task\'s {esc(metric)} as it reported it, step by step (hover a line for the '
        "task "
        "and its params); a dashed line is a task the stop rule pruned, drawn up to where it stopped, with a "
        f"dot there giving the step and the rule's reason.{cap}</p>"
    )
