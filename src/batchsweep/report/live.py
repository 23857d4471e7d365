"""The running tasks' series, as `status --watch` and the notebook progress show them: per running task its
latest step, the latest value of the watched metric (the stop rule's, else the first in its series), the best
so far and the values seen (for a sparkline).

Which tasks are running is read from the store, not asked of the engine: a task with a series and no status
yet. One listing of the run's task files finds them (one LIST per 1,000 keys on S3), then only their series
are read — a 10,000-task AWS run with 50 tasks running reads 50 files per refresh, not 10,000.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

from batchsweep.task.series import number, parse

if TYPE_CHECKING:
    from batchsweep.runs.run import Run

SPARK_POINTS = 60  # a sparkline draws at most this many points (an even sample of the series)


@dataclass(frozen=True)
class LiveRow:
    index: int
    step: Any
    value: float
    best: float
    params: dict[str, Any]
    values: list[float] = field(default_factory=list)  # the metric at every step so far


@dataclass(frozen=True)
class Live:
    metric: str
    maximize: bool
    rows: list[LiveRow]


def running_with_series(run: Run) -> list[int]:
    """Tasks that have a series in the store and no status yet (running, or cut off before they wrote one)."""
    return run.store.running_with_series(run.id)


def live_rows(run: Run) -> Live | None:
    """The running tasks' series (None when no running task has reported a step yet)."""
    from batchsweep.metrics import direction_from_name

    running = running_with_series(run)
    if not running:
        return None
    raws = run.store._read_many([run.store.task_series_key(run.id, i) for i in running])
    records = {i: parse(raw) for i, raw in zip(running, raws) if raw}
    stop = run.record.spec.stop
    names = sorted({k for recs in records.values() for r in recs for k in r
                    if k not in ("step", "t") and number(r[k]) is not None})
    metric = stop.metric if stop else names[0] if names else None
    if metric is None:
        return None
    up = stop.direction == "maximize" if stop and stop.direction else bool(direction_from_name(metric))
    tasks = {t.index: t for t in run.tasks()} if records else {}
    rows = []
    for index, recs in sorted(records.items()):
        seen = [(r.get("step"), float(v)) for r in recs if (v := number(r.get(metric))) is not None]
        if not seen:
            continue
        values = [v for _, v in seen]
        step = max((number(r.get("step")) or 0 for r in recs), default=None)
        rows.append(LiveRow(index=index, step=step, value=values[-1], best=max(values) if up else min(values),
                            params=tasks[index].params if index in tasks else {}, values=values))
    return Live(metric=metric, maximize=up, rows=rows) if rows else None


def sparkline(values: list[float], *, width: int = 120, height: int = 22, maximize: bool = False) -> str:
    """An inline SVG polyline of the values (an even sample beyond SPARK_POINTS), the best point marked."""
    if not values:
        return ""
    if len(values) > SPARK_POINTS:
        step = (len(values) - 1) / (SPARK_POINTS - 1)
        values = [values[round(k * step)] for k in range(SPARK_POINTS)]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    n = max(len(values) - 1, 1)

    def xy(k: int, v: float) -> tuple[float, float]:
        return 1 + (width - 2) * k / n, height - 2 - (height - 4) * (v - lo) / span

    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(k, v) for k, v in enumerate(values)))
    best = values.index(max(values) if maximize else min(values))
    bx, by = xy(best, values[best])
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'xmlns="http://www.w3.org/2000/svg"><polyline fill="none" stroke="#1f77b4" stroke-width="1.5" '
            f'points="{points}"/><circle cx="{bx:.1f}" cy="{by:.1f}" r="2.2" fill="#4c9a6a"/></svg>')


def html_table(live: Live, *, limit: int = 20) -> str:
    """The running tasks as an HTML table for a notebook: task, step, latest and best value, a sparkline,
    params; at most `limit` rows (the best first), saying how many more run."""
    from batchsweep.text import cell

    rows = sorted(live.rows, key=lambda r: -r.best if live.maximize else r.best)
    shown = rows[:limit]
    m = escape(live.metric)
    head = (f"<tr><th>task</th><th>step</th><th>{m}</th><th>best {m}</th><th>curve</th>"
            "<th style='text-align:left'>params</th></tr>")
    body = "".join(
        f"<tr data-task='{r.index}'><td>{r.index}</td><td>{escape(cell(r.step))}</td><td>{r.value:.4g}</td>"
        f"<td>{r.best:.4g}</td><td>{sparkline(r.values, maximize=live.maximize)}</td><td "
        f"style='text-align:left'>{escape(' '.join(f'{k}={cell(v)}' for k, v in r.params.items()))}</td></tr>"
        for r in shown
    )
    more = f"<p>and {len(rows) - len(shown)} more running</p>" if len(rows) > len(shown) else ""
    return f"<table class='batchsweep-live'><caption>running tasks</caption>{head}{body}</table>{more}"
