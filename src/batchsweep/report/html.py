"""The HTML report of a run: one self-contained file (inline CSS, SVG and a little JS) that opens offline.

It answers the questions a user has after a sweep: which parameters won, how robust that is, what
failed and why, and where the time went. ``build_report`` takes the results table (one row per
task) and returns the page; it reads no run files (only its own style and script, package data under
``batchsweep/data/``) and touches no network.

This module assembles the page (header, overview cards, failures); the table of every task and the
provenance are `batchsweep.report.tasktable`'s, the plots `batchsweep.report.plotsections`', and the metric
it ranks by `batchsweep.report.ranking`'s.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from importlib import resources
from typing import Any

import pandas as pd

from batchsweep.model import FAILED_STATE_NAMES, OWN_PARAMS, STATE_NAMES
from batchsweep.report import svgplot
from batchsweep.report.curves import section as curves_section
from batchsweep.report.importance import param_importance
from batchsweep.report.plotsections import (
    history_section,
    importance_section,
    plots_section,
)
from batchsweep.report.ranking import choose_metric, numeric_column, numeric_values
from batchsweep.report.searchviews import section as search_views
from batchsweep.report.svgplot import Dim, esc, finite, fmt
from batchsweep.report.tasktable import (
    all_tasks_section,
    git_state,
    provenance_section,
    reused_from,
    short_digest,
)
from batchsweep.text import duration

MAX_FAILURES, MAX_LOG_TAILS = 200, 20


def build_report(df: pd.DataFrame, *, params: list[str], metrics: list[str], summary: dict[str, Any],
                 log_tail: Callable[[int], str] | None = None, metric: str | None = None,
                 maximize: bool | None = None, top_k: int = 10, derived: Sequence[str] = (),
                 sampled: Sequence[str] = (), series: dict[int, list[dict[str, Any]]] | None = None,
                 sources: Sequence[dict[str, Any]] = (), log_params: Sequence[str] | None = None,
                 live: dict[str, Any] | None = None, extra: Sequence[str] = ()) -> tuple[str, str, bool]:
    """Render the run as one HTML page; returns ``(html, chosen_metric, maximize)``.

    With no ``metric``, picks one by name (sharpe, accuracy, ... to maximize; loss, error, ... to minimize) or
    else the first numeric one, and the page says which and why. ``chosen_metric`` is ``""`` when the table
    has no numeric metric (e.g. every task failed before writing one). ``derived`` params (made of others by a
    ``{placeholder}``) and ``trial``/``round``/``repeat`` are not plotted as dimensions; ``sampled`` params
    (drawn at random: a search's or ``params.random``'s space) are drawn as scatter plots and never in a
    heatmap. ``log_params``: the sampled params whose distribution is logarithmic; a sampled param's axis is
    logarithmic when it is named there, and only then (None: every param's axis is logarithmic when its values
    span two decades, as a grid's is).

    ``sources`` is the provenance of every run the rows were computed in (this run first, then each run a
    reused row or a sweep's row came from): dicts with ``run_id``, ``role``, ``code_hash``, ``provenance``
    (run.json ``provenance``), ``env`` and ``found`` (False: that run is gone from the store). The table then
    shows each row's source run, task and content key (``reused_from``, ``run`` and ``key`` columns).

    ``live``: the page is served by ``batchsweep report --serve`` (``{"active": bool, "refresh_s": float}``);
    it says how far the run is and, while ``active``, re-fetches itself every ``refresh_s`` seconds.
    ``extra``: more sections (a sweep's runs compared), placed before the failures.
    """
    df = df.reset_index(drop=True)
    structure = [p for p in OWN_PARAMS if p in df.columns]
    derived = [p for p in params if p in derived and p in df.columns]
    params = [p for p in params if p in df.columns and p not in structure and p not in derived]
    metrics = [m for m in metrics if m in df.columns]
    chosen, maximize, why = choose_metric(df, metrics, metric, maximize)
    values = [float(v) for v in numeric_values(df[chosen])] if chosen else [math.nan] * len(df)
    dims = {p: svgplot.dim_from(p, df[p].tolist()) for p in params}
    if log_params is not None:  # a sampled param's axis follows its declared distribution
        for p in params:
            if p in sampled and dims[p].categories is None:
                dims[p].log = p in log_params and all(v > 0 for v in dims[p].levels())
    varying = [p for p in params if len(dims[p].levels()) > 1]
    continuous = {
        p for p in varying if dims[p].categories is None and (p in sampled or len(dims[p].levels()) > 30)
    }
    search = "trial" in structure
    importance = param_importance(varying, dims, values, maximize)
    sections = [
        _header(summary, sources[0] if sources else None),
        _live_banner(df, summary, live) if live is not None else "",
        _overview(
            df, summary, params, varying, dims, chosen, maximize, why, values, structure, derived, continuous
        ),
        history_section(df, chosen, maximize, values) if search else "",
        search_views(
            dims,
            varying,
            numeric_column(df, "trial").tolist(),
            values,
            metric=chosen,
            maximize=maximize,
            scores=importance[0],
        )
        if search
        else "",
        curves_section(df, series or {}, chosen, summary, varying),
        importance_section(importance),
        all_tasks_section(df, varying, structure, metrics, chosen, maximize, values, top_k),
        plots_section(df, varying, continuous, dims, chosen, maximize, values, top_k),
        *extra,
        _failures(df, varying, log_tail),
        provenance_section(df, sources),
    ]
    title = f"batchsweep report: {summary.get('name', '')} {summary.get('run_id', '')}"
    top = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
           f'<meta name="viewport" content="width=device-width, initial-scale=1">'
           f"<title>{esc(title)}</title><style>\n{asset('report.css')}</style></head>\n"
           f"<body{_live_attrs(live)}>\n<main>")
    bottom = (f'<footer>Generated by batchsweep on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. '
              f"Hover a point, line, cell or bar for details; click a column header to sort.</footer>"
              f"\n</main>\n<script>\n{asset('report.js')}</script>\n</body></html>\n")
    # one join: a 100,000-task page is tens of MB, copied once
    page = "\n".join([top, *(s for s in sections if s), bottom])
    return page, chosen, maximize


def _live_attrs(live: dict[str, Any] | None) -> str:
    if live is None:
        return ""
    active = "1" if live.get("active") else "0"
    return f' data-live="{active}" data-refresh-ms="{int(float(live.get("refresh_s", 2.0)) * 1000)}"'


def _live_banner(df: pd.DataFrame, summary: dict[str, Any], live: dict[str, Any]) -> str:
    """How far the run is, for a served page: done of total, running, and whether it refreshes."""
    status = df["status"].astype(str).tolist() if "status" in df.columns else []
    done = sum(1 for s in status if s not in ("pending", "running"))
    running = sum(1 for s in status if s == "running")
    total = int(summary.get("n_tasks") or len(df))
    # a search's tasks are proposed a round at a time: count against the trials it will run, not those so far
    trials = int(summary.get("search_trials") or 0)
    total = max(total, trials)
    counts = (
        f'<b id="live-done">{done}</b> of <b id="live-total">{total}</b> {"trials" if trials else "tasks"} '
        f'done, <b id="live-running">{running}</b> running'
    )
    if live.get("active"):
        how = f"the run is going: this page re-reads the store every {float(live.get('refresh_s', 2.0)):g} s"
    else:
        how = "the run has ended: this is its final state (the page no longer refreshes)"
    return (f'<p class="live {"on" if live.get("active") else "off"}" id="live">{counts} · '
            f'<span id="live-state">{esc(how)}</span></p>')


@functools.cache
def asset(name: str) -> str:
    """The text of one of the page's style or script files, shipped as package data (``batchsweep/data/``)."""
    return resources.files("batchsweep").joinpath("data", name).read_text(encoding="utf-8")


def _header(summary: dict[str, Any], source: dict[str, Any] | None = None) -> str:
    bits = [
        f"run <code>{esc(summary.get('run_id', '?'))}</code>",
        f"backend {esc(summary.get('backend', '?'))}",
        f"created {esc(summary.get('created', '?'))}",
    ]
    if source is not None:
        bits.append(
            f"code <code>{esc(short_digest(source.get('code_hash')))}</code> · "
            f"{git_state(source.get('provenance'))} "
            '(<a href="#provenance">provenance</a>)'
        )
    return (
        f"<header><h1>{esc(summary.get('name', 'sweep'))}</h1><p class='sub'>{' · '.join(bits)}</p></header>"
    )


def timing(df: pd.DataFrame) -> dict[str, float]:
    """Wall time, summed task time, distinct workers and parallel efficiency (NaN when unknown)."""
    start, end = numeric_column(df, "started_at"), numeric_column(df, "ended_at")
    wall = float(end.max() - start.min()) if start.notna().any() and end.notna().any() else math.nan
    dur = numeric_column(df, "duration_s").where(lambda d: d.notna(), end - start)
    busy = float(dur.sum(min_count=1))
    ran = start.notna()
    workers = df.loc[ran, "worker"].dropna().nunique() if "worker" in df.columns else int(ran.any())
    workers = max(int(workers), 1)
    eff = busy / (wall * workers) if math.isfinite(busy) and math.isfinite(wall) and wall > 0 else math.nan
    return {"wall_s": wall, "busy_s": busy, "workers": workers, "efficiency": eff}


def _overview(
    df: pd.DataFrame,
    summary: dict[str, Any],
    params: list[str],
    varying: list[str],
    dims: dict[str, Dim],
    chosen: str,
    maximize: bool,
    why: str,
    values: list[float],
    structure: Sequence[str] = (),
    derived: Sequence[str] = (),
    continuous: set[str] | None = None,
) -> str:
    status = df["status"].astype(str).str.lower() if "status" in df.columns else pd.Series("", index=df.index)
    counts = status.value_counts()
    copied = reused_from(df).astype(bool)
    t = timing(df[~copied])  # a reused row's times are its own run's: this run did not spend them
    cards = [("tasks", str(summary.get("n_tasks", len(df))))]
    cards += [(s, str(int(counts.get(s, 0)))) for s in STATE_NAMES if counts.get(s, 0) or s == "succeeded"]
    reused = int(copied.sum())
    if reused:
        cards.append(("reused, not run", str(reused)))
    cards += [("wall time", duration(t["wall_s"])), ("summed task time", duration(t["busy_s"])),
              ("workers", str(t["workers"])),
              ("parallel efficiency", f"{t['efficiency']:.0%}" if math.isfinite(t["efficiency"]) else "–")]
    if summary.get("stop_saved"):
        cards.append(("saved by stopping", "~" + duration(summary["stop_saved"])))
    if finite(summary.get("cost_usd")):
        cost = summary["cost_usd"]
        cards.append(("estimated cost", f"${cost:.2f}" if cost >= 1 else f"${cost:.2g}"))
    html = (
        ['<section class="cards">']
        + [
            f'<div class="card {esc(k) if k in STATE_NAMES else ""}"><div class="v">{esc(v)}</div><div '
            f'class="k">{esc(k)}</div></div>'
            for k, v in cards
        ]
        + ["</section>"]
    )
    if summary.get("cost_note"):
        html.append(f'<p class="note">Cost: {esc(summary["cost_note"])}</p>')
    if summary.get("same_metrics"):
        html.append(f'<p class="note same-metrics">Warning: {esc(summary["same_metrics"])}</p>')
    if summary.get("right_size"):
        html.append(f'<p class="note right-size">Resources: {esc(summary["right_size"])}</p>')
    fixed = [p for p in params if p not in varying]
    if fixed:
        html.append(
            '<p class="note">Fixed for every task: '
            + ", ".join(
                f"<code>{esc(p)}={esc(fmt(dims[p].levels()[0]) if dims[p].levels() else '–')}</code>"
                for p in fixed
            )
            + "</p>"
        )
    if derived:
        html.append('<p class="note">Made of other params by a placeholder, so not a dimension of the sweep: '
                    + ", ".join(f"<code>{esc(p)}</code>" for p in derived) + "</p>")
    if structure:
        html.append('<p class="note">Run structure, not params: '
                    + ", ".join(f"<code>{esc(p)}</code>" for p in structure) + "</p>")
    if not chosen:
        html.append(f'<p class="metric">No metric to rank by: {esc(why)}.</p>')
        return "\n".join(html)
    arrow = "higher is better" if maximize else "lower is better"
    html.append(
        f'<p class="metric">Ranking by <b>{esc(chosen)}</b> ({"maximize" if maximize else "minimize"}, '
        f"{arrow}) — {esc(why)}.</p>"
    )
    ok = [i for i, v in enumerate(values) if math.isfinite(v)]
    if not ok:
        html.append(f'<p class="metric">No task produced a numeric <b>{esc(chosen)}</b>.</p>')
        return "\n".join(html)
    best = (max if maximize else min)(ok, key=lambda i: values[i])
    where = ", ".join(f"{esc(p)}=<b>{esc(fmt(dims[p].values[best]))}</b>" for p in varying) or "the only task"
    html.append(
        f'<p class="best">Best task <b>#{esc(df.at[best, "task"] if "task" in df.columns else best)}</b>: '
        f"{where} → {esc(chosen)} <b>{esc(fmt(values[best]))}</b> "
        f"(median over {len(ok)} tasks: {esc(fmt(float(pd.Series(values).median())))})</p>"
    )
    robust = []
    for p in (p for p in varying if p not in (continuous or set())):  # a value drawn once has no "on average"
        means = pd.Series(values).groupby([fmt(v) for v in dims[p].values]).mean().dropna()
        if 1 < len(means) <= 30:
            k = means.idxmax() if maximize else means.idxmin()
            worst = means.idxmin() if maximize else means.idxmax()
            robust.append(f"{esc(p)}=<b>{esc(k)}</b> (mean {esc(fmt(float(means[k])))} vs "
                          f"{esc(fmt(float(means[worst])))} for {esc(worst)})")
    if robust:
        html.append('<p class="best">Best on average over the other params: ' + "; ".join(robust) + "</p>")
    return "\n".join(html)


def _failures(df: pd.DataFrame, varying: list[str], log_tail: Callable[[int], str] | None) -> str:
    if "status" not in df.columns:
        return ""
    bad = df[df["status"].astype(str).str.lower().isin(FAILED_STATE_NAMES)]
    if bad.empty:
        return '<h2 id="failures">Failures</h2><p class="note">No task failed.</p>'
    items = []
    for n, (_, row) in enumerate(bad.head(MAX_FAILURES).iterrows()):
        task = row["task"] if "task" in df.columns else row.name
        params = ", ".join(f"{p}={svgplot.label_of(row[p])}" for p in varying)
        error = row.get("error")
        reason = error if isinstance(error, str) and error else "no reason recorded"
        tail = ""
        if log_tail is not None and n < MAX_LOG_TAILS:
            try:
                tail = log_tail(int(task))
            except Exception as exc:  # a missing log must not cost the user the whole report
                tail = f"(log unavailable: {exc})"
        attempts = f", {fmt(row['attempts'])} attempt(s)" if "attempts" in df.columns else ""
        opened = " open" if len(bad) <= 3 else ""
        log = (
            f"<details{opened}><summary>stderr tail</summary><pre>{esc(tail)}</pre></details>" if tail else ""
        )
        items.append(f'<li><span class="pill {esc(row["status"])}">{esc(row["status"])}</span> '
                     f"<b>task {esc(task)}</b> <code>{esc(params)}</code>{esc(attempts)}: "
                     f'<span class="err">{esc(reason)}</span>{log}</li>')
    more = f"<p class='note'>… and {len(bad) - MAX_FAILURES} more.</p>" if len(bad) > MAX_FAILURES else ""
    return f'<h2 id="failures">Failures ({len(bad)})</h2><ul class="fail">{"".join(items)}</ul>{more}'
