"""The report's plot sections: the optimisation history of a search, parameter importance, the metric by
param (parallel coordinates, per-param means, a heatmap), the durations and the timeline of where tasks ran.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from batchsweep.report import svgplot
from batchsweep.report.ranking import numeric_column
from batchsweep.report.svgplot import Dim, esc, fmt


def _tips(keys: list[Any], varying: list[str], dims: dict[str, Dim], chosen: str,
          values: list[float]) -> Callable[[int], str]:
    """The tip of row i's line, made when a chart draws it (it draws a sample of a big run's rows)."""
    def tip(i: int) -> str:
        return (f"task {keys[i]}: " + ", ".join(f"{p}={fmt(dims[p].values[i])}" for p in varying)
                + f" → {chosen} {fmt(values[i])}")

    return tip


def history_section(df: pd.DataFrame, chosen: str, maximize: bool, values: list[float]) -> str:
    if not chosen or not any(math.isfinite(v) for v in values):
        return ""
    return (
        '<h2>Optimisation history</h2><div class="full">'
        + svgplot.history(
            numeric_column(df, "trial").tolist(),
            values,
            metric_label=chosen,
            maximize=maximize,
            rounds=numeric_column(df, "round").tolist() if "round" in df.columns else None,
        )
        + "</div>"
        + f'<p class="cap">One dot per trial; the line is the best {esc(chosen)} so far'
        + ("; a dashed line marks where each round of proposals begins." if "round" in df.columns else ".")
        + "</p>"
    )


def importance_section(importance: tuple[dict[str, float], str]) -> str:
    scores, method = importance
    if not scores:
        return ""
    how = (
        "Optuna's fANOVA: a random forest fitted to the finished tasks splits the metric's variance among "
        "the params"
        if method == "fANOVA"
        else "the share of the metric's variance each param explains on its own (η², continuous params in 10 "
        "bins): for a grid or from 2,000 tasks on it is the main effect fANOVA's forest would estimate; "
        "Optuna's fANOVA is used for 50 to 1,999 tasks sampled at random when Optuna and scikit-learn are "
        "installed"
    )
    return (
        f'<h2>Parameter importance</h2><div class="grid2">{svgplot.importance(scores, method=method)}</div>'
        f'<p class="cap">How much each param moves the metric, normalised to sum to 1: {esc(how)}.</p>'
    )


def plots_section(
    df: pd.DataFrame,
    varying: list[str],
    continuous: set[str],
    dims: dict[str, Dim],
    chosen: str,
    maximize: bool,
    values: list[float],
    top_k: int,
) -> str:
    out = ["<h2>Plots</h2>"]
    if len(df) > svgplot.MAX_MARKS:
        out.append(
            f'<p class="note" id="sampled">{len(df):,} tasks: the line, dot and bar plots draw an even '
            "sample of "
            f"about {svgplot.MAX_MARKS:,} of them (plus the top {top_k}) so the page stays light; means, "
            "heatmap cells, histograms and the table above use every task.</p>"
        )
    mdim = Dim(chosen, values)
    has_values = bool(chosen) and any(math.isfinite(v) for v in values)
    if has_values and varying:
        keys = df["task"].tolist() if "task" in df.columns else list(range(len(df)))
        ranked = sorted(
            (i for i, v in enumerate(values) if math.isfinite(v)), key=lambda i: values[i], reverse=maximize
        )
        out.append('<div class="full">' + svgplot.parallel_coordinates(
            [dims[p] for p in varying], mdim, maximize=maximize,
            tip=_tips(keys, varying, dims, chosen, values), keys=keys,
            highlight=set(ranked[:top_k])) + "</div>")
        scattered = [p for p in varying if p in continuous]
        dots = (
            f" Params drawn at random or with many values ({', '.join(scattered)}) get one dot per task "
            "instead."
            if scattered
            else ""
        )
        out.append(
            f'<p class="cap">One line per task, coloured by {esc(chosen)}; the top {top_k} are drawn bold. '
            "Below: the mean per value (dot; the best in green) and the min–max spread over the other params."
            f"{esc(dots)}</p>"
        )
        out.append('<div class="grid3">' + "".join(svgplot.by_param(dims[p], mdim, maximize=maximize,
                                                                     scatter=p in continuous)
                                                    for p in varying) + "</div>")
    elif not has_values:
        out.append(f'<p class="note">No task produced a numeric metric{" " + esc(chosen) if chosen else ""}: '
                   "the metric plots are left out.</p>")
    else:
        out.append('<p class="note">No parameter varies across tasks: the metric plots are left out.</p>')
    grid = [p for p in varying if p not in continuous and len(dims[p].levels()) <= 30][:2]
    pair = ""
    if has_values and len(grid) == 2:
        states = df["status"].astype(str).tolist() if "status" in df.columns else None
        pair = svgplot.heatmap(dims[grid[1]], dims[grid[0]], mdim, maximize=maximize, states=states)
    elif has_values and len(varying) > 1:
        out.append(
            '<p class="note">No heatmap: it needs two params with a few fixed values each (at most 30), '
            "and params drawn at random from a range have a different value in every task.</p>"
        )
    durations = numeric_column(df, "duration_s").tolist()
    out.append(f'<div class="grid2">{pair}{svgplot.histogram(durations, label="duration (s)")}</div>')
    out.append(timeline_section(df, varying, dims))
    return "\n".join(out)


def timeline_lanes(df: pd.DataFrame) -> tuple[list[str], list[tuple[int, int]], str]:
    """Where each task ran, as timeline lanes: a lane per GPU when tasks were leased GPUs (a task on two GPUs
    is drawn on both), else per worker (a local slot, a Dask worker, an AWS container). Tasks that overlap on
    one lane (GPU shares, a Dask worker's threads) get a row each, named `LANE · 2`, … so no bar hides
    another. Returns (lane names, (lane, row of df) per bar, what the lanes are)."""
    start, end = numeric_column(df, "started_at").tolist(), numeric_column(df, "ended_at").tolist()
    ok = sorted((i for i in range(len(df)) if math.isfinite(start[i]) and math.isfinite(end[i])),
                key=lambda i: (start[i], end[i]))
    workers = [str(w) if w is not None and w == w else "worker" for w in
               (df["worker"].tolist() if "worker" in df.columns else ["all tasks"] * len(df))]
    gpus = [str(g) if isinstance(g, str) and g else "" for g in
            (df["gpu"].tolist() if "gpu" in df.columns else [""] * len(df))]
    by_gpu = any(gpus[i] for i in ok)
    rows: dict[str, list[float]] = {}  # group -> when each of its rows is free again
    placed: list[tuple[str, int, int]] = []
    for i in ok:
        groups = [f"GPU {g}" for g in gpus[i].split(",")] if gpus[i] else [workers[i]]
        for group in groups:
            free = rows.setdefault(group, [])
            row = next((r for r, t in enumerate(free) if t <= start[i] + 1e-3), len(free))
            if row == len(free):
                free.append(end[i])
            else:
                free[row] = end[i]
            placed.append((group, row, i))
    names = {(g, r): g if len(rows[g]) == 1 else f"{g} · {r + 1}" for g in rows for r in range(len(rows[g]))}
    lanes = sorted(names.values(), key=svgplot._natural)
    index = {name: j for j, name in enumerate(lanes)}
    lane_of = {key: index[name] for key, name in names.items()}
    return lanes, [(lane_of[g, r], i) for g, r, i in placed], "GPUs" if by_gpu else "workers"


def timeline_section(df: pd.DataFrame, varying: list[str], dims: dict[str, Dim]) -> str:
    start, end = numeric_column(df, "started_at").tolist(), numeric_column(df, "ended_at").tolist()
    lanes, placed, kind = timeline_lanes(df)
    if not placed:
        return '<p class="note">No timeline: no task has both a start and an end time.</p>'
    t0 = min(start[i] for _, i in placed)
    status = df["status"].astype(str).tolist() if "status" in df.columns else ["succeeded"] * len(df)
    tasks = df["task"].tolist() if "task" in df.columns else list(range(len(df)))
    workers = df["worker"].tolist() if kind != "workers" else []
    every = svgplot.sample_every(len(placed))  # the bars the chart draws: only theirs need a tip
    bars = []
    for n, (lane, i) in enumerate(placed):
        tip = ""
        if n % every == 0:
            params = ", ".join(f"{p}={fmt(dims[p].values[i])}" for p in varying)
            where = lanes[lane] if kind == "workers" else f"{lanes[lane]} of {workers[i]}"
            tip = (f"task {tasks[i]} on {where}: {status[i]}, {end[i] - start[i]:.1f} s"
                   + (f" ({params})" if params else ""))
        bars.append((lane, start[i] - t0, end[i] - t0, status[i], tip))
    return '<div class="full">' + svgplot.timeline(lanes, bars, over=kind) + "</div>"
