"""The HTML report of a run: one self-contained file (inline CSS, SVG and a little JS) that opens offline.

It answers the questions a user has after a sweep: which parameters won, how robust that is, what
failed and why, and where the time went. ``build_report`` takes the results table (one row per
task) and returns the page; it reads no run files (only its own style and script, package data under
``batchsweep/data/``) and touches no network.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from importlib import resources
from typing import Any

import pandas as pd

from batchsweep.errors import SweepError
from batchsweep.metrics import MAXIMIZE_NAMES, MINIMIZE_NAMES, direction_from_name
from batchsweep.model import FAILED_STATE_NAMES, OWN_PARAMS, STATE_NAMES
from batchsweep.report import svgplot
from batchsweep.report.curves import section as curves_section
from batchsweep.report.importance import param_importance
from batchsweep.report.searchviews import section as search_views
from batchsweep.report.svgplot import Dim, esc, finite, fmt
from batchsweep.text import duration

# A metric picked by default is a quality one: never a time or a cost, even though those have a direction.
DEFAULT_PICK = tuple(n for n in MAXIMIZE_NAMES + MINIMIZE_NAMES
                     if n not in ("time", "duration", "latency", "cost", "drawdown"))
MAX_FAILURES, MAX_LOG_TAILS = 200, 20



def build_report(df: pd.DataFrame, *, params: list[str], metrics: list[str], summary: dict[str, Any],
                 log_tail: Callable[[int], str] | None = None, metric: str | None = None,
                 maximize: bool | None = None, top_k: int = 10, derived: Sequence[str] = (),
                 sampled: Sequence[str] = (), series: dict[int, list[dict[str, Any]]] | None = None,
                 sources: Sequence[dict[str, Any]] = (), log_params: Sequence[str] | None = None,
                 live: dict[str, Any] | None = None, extra: Sequence[str] = ()) -> tuple[str, str, bool]:
    """Render the run as one HTML page; returns ``(html, chosen_metric, maximize)``.

    With no ``metric``, picks one by name (sharpe, accuracy, ... to maximize; loss, error, ... to
    minimize) or else the first numeric one, and the page says which and why. ``chosen_metric`` is
    ``""`` when the table has no numeric metric (e.g. every task failed before writing one).
    ``derived`` params (made of others by a ``{placeholder}``) and ``trial``/``round``/``repeat`` are not
    plotted as dimensions; ``sampled`` params (drawn at random: a search's or ``params.random``'s space) are
    drawn as scatter plots and never in a heatmap. ``log_params``: the sampled params whose distribution is
    logarithmic; a sampled param's axis is logarithmic when it is named there, and only then (None: every param's
    axis is logarithmic when its values span two decades, as a grid's is).

    ``sources`` is the provenance of every run the rows were computed in (this run first, then each run a
    reused row or a sweep's row came from): dicts with ``run_id``, ``role``, ``code_hash``, ``provenance`` (run.json
    ``provenance``), ``env`` and ``found`` (False: that run is gone from the store). The table then shows each row's
    source run, task and content key (``reused_from``, ``run`` and ``key`` columns).

    ``live``: the page is served by ``batchsweep report --serve`` (``{"active": bool, "refresh_s": float}``); it
    says how far the run is and, while ``active``, re-fetches itself every ``refresh_s`` seconds. ``extra``: more
    sections (a sweep's runs compared), placed before the failures.
    """
    df = df.reset_index(drop=True)
    structure = [p for p in OWN_PARAMS if p in df.columns]
    derived = [p for p in params if p in derived and p in df.columns]
    params = [p for p in params if p in df.columns and p not in structure and p not in derived]
    metrics = [m for m in metrics if m in df.columns]
    chosen, maximize, why = choose_metric(df, metrics, metric, maximize)
    values = [float(v) for v in _numeric(df[chosen])] if chosen else [math.nan] * len(df)
    dims = {p: svgplot.dim_from(p, df[p].tolist()) for p in params}
    if log_params is not None:  # a sampled param's axis follows its declared distribution
        for p in params:
            if p in sampled and dims[p].categories is None:
                dims[p].log = p in log_params and all(v > 0 for v in dims[p].levels())
    varying = [p for p in params if len(dims[p].levels()) > 1]
    continuous = {p for p in varying if dims[p].categories is None and (p in sampled or len(dims[p].levels()) > 30)}
    search = "trial" in structure
    importance = param_importance(varying, dims, values, maximize)
    sections = [
        _header(summary, sources[0] if sources else None),
        _live_banner(df, summary, live) if live is not None else "",
        _overview(df, summary, params, varying, dims, chosen, maximize, why, values, structure, derived, continuous),
        _history(df, chosen, maximize, values) if search else "",
        search_views(dims, varying, _col(df, "trial").tolist(), values, metric=chosen, maximize=maximize,
                     scores=importance[0]) if search else "",
        curves_section(df, series or {}, chosen, summary, varying),
        _importance(importance),
        _all_tasks(df, varying, structure, metrics, chosen, maximize, values, top_k),
        _plots(df, varying, continuous, dims, chosen, maximize, values, top_k),
        *extra,
        _failures(df, varying, log_tail),
        _provenance(df, sources),
    ]
    title = f"batchsweep report: {summary.get('name', '')} {summary.get('run_id', '')}"
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>\n{asset('report.css')}</style></head>\n<body{_live_attrs(live)}>\n<main>\n"
            + "\n".join(s for s in sections if s)
            + f'\n<footer>Generated by batchsweep on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. '
              f"Hover a point, line, cell or bar for details; click a column header to sort.</footer>"
            + f"\n</main>\n<script>\n{asset('report.js')}</script>\n</body></html>\n")
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
    counts = (f'<b id="live-done">{done}</b> of <b id="live-total">{total}</b> {"trials" if trials else "tasks"} '
              f'done, <b id="live-running">{running}</b> running')
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


def choose_metric(df: pd.DataFrame, metrics: list[str], metric: str | None,
                  maximize: bool | None) -> tuple[str, bool, str]:
    """The metric to rank by, its direction, and a sentence saying why."""
    numeric = [m for m in metrics if _is_numeric(df[m])]
    if metric is not None:
        if metric not in metrics:
            known = ", ".join(metrics) or "none"
            raise SweepError(f"unknown metric {metric!r}: the results have these metrics: {known}")
        if metric not in numeric:
            raise SweepError(f"metric {metric!r} is not numeric; pick one of: {', '.join(numeric) or 'none'}")
        why = "chosen with --metric"
    else:
        metric, why = _default_metric(numeric)
        if not metric:
            return "", True if maximize is None else maximize, why
    if maximize is not None:
        return metric, maximize, f"{why}; direction given ({'maximize' if maximize else 'minimize'})"
    guess = direction_from_name(metric, df[metric].tolist())
    if guess is None:
        return metric, True, f"{why}; maximized because its name does not say (use --minimize to flip)"
    return metric, guess, f"{why}; {'maximized' if guess else 'minimized'} because of its name"


def _default_metric(numeric: list[str]) -> tuple[str, str]:
    if not numeric:
        return "", "no numeric metric in the results"
    for key in DEFAULT_PICK:
        for m in sorted(numeric, key=lambda m: m.lower() != key):  # an exact name beats a token match
            if key in re.split(r"[^a-z0-9]+", m.lower()):
                return m, f"picked by default: its name contains '{key}'"
    return numeric[0], "picked by default: the first numeric metric"


def _numeric(s: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(s):
        return pd.Series(math.nan, index=s.index)
    return pd.Series([float(v) if finite(v) else math.nan for v in s.tolist()], index=s.index)


def _is_numeric(s: pd.Series) -> bool:
    """Every present value is a number (not a bool); an all-missing column counts as numeric."""
    if pd.api.types.is_bool_dtype(s):
        return False
    present = [v for v in s.tolist() if v is not None and v is not pd.NA and not (isinstance(v, float) and math.isnan(v))]
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return _numeric(df[name]) if name in df.columns else pd.Series(math.nan, index=df.index)


def _header(summary: dict[str, Any], source: dict[str, Any] | None = None) -> str:
    bits = [f"run <code>{esc(summary.get('run_id', '?'))}</code>", f"backend {esc(summary.get('backend', '?'))}",
            f"created {esc(summary.get('created', '?'))}"]
    if source is not None:
        bits.append(f"code <code>{esc(_short(source.get('code_hash')))}</code> · {_git(source.get('provenance'))} "
                    '(<a href="#provenance">provenance</a>)')
    return f"<header><h1>{esc(summary.get('name', 'sweep'))}</h1><p class='sub'>{' · '.join(bits)}</p></header>"


def timing(df: pd.DataFrame) -> dict[str, float]:
    """Wall time, summed task time, distinct workers and parallel efficiency (NaN when unknown)."""
    start, end = _col(df, "started_at"), _col(df, "ended_at")
    wall = float(end.max() - start.min()) if start.notna().any() and end.notna().any() else math.nan
    dur = _col(df, "duration_s").where(lambda d: d.notna(), end - start)
    busy = float(dur.sum(min_count=1))
    ran = start.notna()
    workers = df.loc[ran, "worker"].dropna().nunique() if "worker" in df.columns else int(ran.any())
    workers = max(int(workers), 1)
    eff = busy / (wall * workers) if math.isfinite(busy) and math.isfinite(wall) and wall > 0 else math.nan
    return {"wall_s": wall, "busy_s": busy, "workers": workers, "efficiency": eff}


def _overview(df: pd.DataFrame, summary: dict[str, Any], params: list[str], varying: list[str],
              dims: dict[str, Dim], chosen: str, maximize: bool, why: str, values: list[float],
              structure: Sequence[str] = (), derived: Sequence[str] = (), continuous: set[str] | None = None) -> str:
    status = df["status"].astype(str).str.lower() if "status" in df.columns else pd.Series("", index=df.index)
    counts = status.value_counts()
    t = timing(df)
    cards = [("tasks", str(summary.get("n_tasks", len(df))))]
    cards += [(s, str(int(counts.get(s, 0)))) for s in STATE_NAMES if counts.get(s, 0) or s == "succeeded"]
    reused = int(_reused(df).astype(bool).sum())
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
    html = ['<section class="cards">'] + [
        f'<div class="card {esc(k) if k in STATE_NAMES else ""}"><div class="v">{esc(v)}</div><div class="k">{esc(k)}</div></div>'
        for k, v in cards] + ["</section>"]
    if summary.get("cost_note"):
        html.append(f'<p class="note">Cost: {esc(summary["cost_note"])}</p>')
    if summary.get("same_metrics"):
        html.append(f'<p class="note same-metrics">Warning: {esc(summary["same_metrics"])}</p>')
    if summary.get("right_size"):
        html.append(f'<p class="note right-size">Resources: {esc(summary["right_size"])}</p>')
    fixed = [p for p in params if p not in varying]
    if fixed:
        html.append('<p class="note">Fixed for every task: '
                    + ", ".join(f"<code>{esc(p)}={esc(fmt(dims[p].levels()[0]) if dims[p].levels() else '–')}</code>"
                                for p in fixed) + "</p>")
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
    html.append(f'<p class="metric">Ranking by <b>{esc(chosen)}</b> ({"maximize" if maximize else "minimize"}, '
                f"{arrow}) — {esc(why)}.</p>")
    ok = [i for i, v in enumerate(values) if math.isfinite(v)]
    if not ok:
        html.append(f'<p class="metric">No task produced a numeric <b>{esc(chosen)}</b>.</p>')
        return "\n".join(html)
    best = (max if maximize else min)(ok, key=lambda i: values[i])
    where = ", ".join(f"{esc(p)}=<b>{esc(fmt(dims[p].values[best]))}</b>" for p in varying) or "the only task"
    html.append(f'<p class="best">Best task <b>#{esc(df.at[best, "task"] if "task" in df.columns else best)}</b>: '
                f"{where} → {esc(chosen)} <b>{esc(fmt(values[best]))}</b> "
                f"(median over {len(ok)} tasks: {esc(fmt(float(pd.Series(values).median())))})</p>")
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


def _cell(v: Any, cls: str = "") -> str:
    v = None if v is pd.NA else v
    sort = v if finite(v) else ("" if v is None or isinstance(v, float) else svgplot.label_of(v))
    klass = f' class="{cls}"' if cls else ""
    return f'<td{klass} data-v="{esc(sort)}">{esc(fmt(v) if finite(v) or v is None else svgplot.label_of(v))}</td>'


def _all_tasks(df: pd.DataFrame, varying: list[str], structure: Sequence[str], metrics: list[str], chosen: str,
               maximize: bool, values: list[float], top_k: int) -> str:
    """Every task, best first, the top k highlighted; sortable by any column and filtered by typing."""
    ranked = sorted((i for i, v in enumerate(values) if math.isfinite(v)), key=lambda i: values[i], reverse=maximize)
    rest = [i for i in range(len(df)) if not math.isfinite(values[i])]
    others = [m for m in metrics if m != chosen]
    # Where each row came from: a sweep's table names the run it was computed in; a reused row its source task.
    origin = [c for c in ("run",) if c in df.columns]
    reused = _reused(df)
    show_reused = bool(reused.astype(bool).any())
    show_key = "key" in df.columns and bool(origin or show_reused)
    tail = [*(["reused from"] if show_reused else []), *(["key"] if show_key else [])]
    # why a task stopped without succeeding (a pruned task's step and rule, a failure's error), beside its status
    whys = _whys(df)
    show_why = any(whys)
    head = ["rank", *origin, "task", *structure, *varying, *([chosen] if chosen else []), *others, "status",
            *(["why"] if show_why else []), "duration_s", *tail]
    rank_of = {i: r for r, i in enumerate(ranked, 1)}
    has = set(df.columns)
    cols = {c: df[c].tolist() for c in ["task", *origin, *structure, *varying, *others, "status", "duration_s", "key"]
            if c in has}
    sources = reused.tolist()
    rows = []
    for i in ranked + rest:
        task = cols["task"][i] if "task" in cols else i
        cells = [_cell(rank_of.get(i)), *(_cell(cols[c][i]) for c in origin), _cell(task),
                 *(_cell(cols[p][i]) for p in [*structure, *varying]),
                 *([_cell(values[i], "m")] if chosen else []), *(_cell(cols[m][i]) for m in others),
                 _cell(cols["status"][i] if "status" in cols else None),
                 *([_cell(whys[i] or None, "why")] if show_why else []),
                 _cell(cols["duration_s"][i] if "duration_s" in cols else None)]
        if show_reused:
            cells.append(_source_cell(sources[i]))
        if show_key:
            cells.append(_key_cell(cols["key"][i]))
        top = ' class="top"' if rank_of.get(i, top_k + 1) <= top_k else ""
        mark = f' data-reused="{esc(sources[i])}"' if sources[i] else ""
        rows.append(f'<tr data-task="{esc(task)}"{mark}{top}>{"".join(cells)}</tr>')
    ths = "".join(f'<th class="{"m" if h == chosen else ""}">{esc(h)}</th>' for h in head)
    by = f", best {esc(chosen)} first; the top {min(top_k, len(ranked))} highlighted" if ranked else ""
    whence = (" <i>reused from</i> names the earlier run and task a row's result was copied from (same content "
              "key, not run again)." if show_reused else "")
    return (f"<h2>All {len(df)} tasks</h2>"
            f'<p class="cap">Every task{by}. Click a header to sort; type to keep the rows that contain every word '
            f'(values, or a status such as <code>failed</code>).{whence} <input id="filter" type="search" '
            f'placeholder="filter rows…" aria-label="filter rows"> <span id="shown">{len(df)} shown</span></p>'
            f"<div class='scroll tall'>"
            f'<table class="sortable" id="tasks"><thead><tr>{ths}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def _whys(df: pd.DataFrame) -> list[str]:
    """Each row's reason for not succeeding (the `error` column: `pruned at step 3 by the median rule ...`), ""
    for a row that succeeded or has none."""
    if "error" not in df.columns:
        return [""] * len(df)
    status = df["status"].astype(str).tolist() if "status" in df.columns else [""] * len(df)
    return [e if isinstance(e, str) and s != "succeeded" else "" for e, s in zip(df["error"].tolist(), status)]


def _reused(df: pd.DataFrame) -> pd.Series:
    """Each row's `reused_from` ("RUN_ID/TASK"), "" when it was computed in its own run."""
    if "reused_from" not in df.columns:
        return pd.Series("", index=df.index)
    return df["reused_from"].map(lambda v: v if isinstance(v, str) else "")


def _source_cell(source: str) -> str:
    if not source:
        return '<td class="src" data-v="">–</td>'
    run_id, _, task = source.rpartition("/")
    return (f'<td class="src" data-v="{esc(source)}"><a href="#prov-{esc(run_id)}"><code>{esc(run_id)}</code></a> '
            f"task {esc(task)}</td>")


def _key_cell(key: Any) -> str:
    key = key if isinstance(key, str) else ""
    return f'<td class="key" data-v="{esc(key)}" title="{esc(key)}"><code>{esc(_short(key))}</code></td>'


def _short(digest: Any, n: int = 12) -> str:
    return str(digest)[:n] if digest else "–"


def _git(prov: dict[str, Any] | None) -> str:
    git = (prov or {}).get("git")
    if not prov:
        return "not recorded"
    if not git:
        return "not in a git repository"
    text = f"git <code>{esc(str(git.get('commit', '?'))[:10])}</code>"
    if git.get("dirty"):
        return text + f" + uncommitted changes (diff <code>{esc(_short(git.get('diff_sha256'), 10))}</code>)"
    return text + " (clean)"


def _provenance(df: pd.DataFrame, sources: Sequence[dict[str, Any]]) -> str:
    """What produced the rows: for this run and each run a row came from, its code hash, git state, interpreter,
    platform, batchsweep version, installed packages and environment."""
    if not sources:
        return ""
    reused = _reused(df)
    rows_from = reused.map(lambda s: s.rpartition("/")[0] if s else "")
    if "run" in df.columns:  # a sweep's table: the run each row was computed in
        rows_from = pd.Series([str(r) for r in df["run"]], index=df.index)
    counts = rows_from.value_counts()
    own = int((rows_from == "").sum())
    body = []
    for src in sources:
        rid = str(src.get("run_id", "?"))
        n = int(counts.get(rid, 0)) + (own if src.get("role") == "this run" else 0)
        prov = src.get("provenance") or {}
        if not src.get("found", True):
            cells = '<td colspan="8" class="err">not in the store any more (deleted); its copied results remain</td>'
        else:
            env = dict(src.get("env") or {})
            extra = [f"image {prov['image']}" if prov.get("image") else "",
                     f"requirements {_short(prov.get('requirements'), 10)}" if prov.get("requirements") else ""]
            env_text = ", ".join([*(f"{k}={v}" for k, v in sorted(env.items())), *(e for e in extra if e)]) or "–"
            packages = (f"{prov.get('packages', '?')} ({_short(prov.get('packages_sha256'), 10)})"
                        if prov.get("packages_sha256") else "–")
            cells = "".join([
                f'<td data-k="code" title="{esc(src.get("code_hash") or "")}"><code>{esc(_short(src.get("code_hash")))}'
                "</code></td>",
                f'<td data-k="git">{_git(prov or None)}</td>',
                f'<td data-k="python">{esc(prov.get("python", "–"))}</td>',
                f'<td data-k="platform">{esc(prov.get("platform", "–"))}</td>',
                f'<td data-k="batchsweep">{esc(prov.get("batchsweep", "–"))}</td>',
                f'<td data-k="packages">{esc(packages)}</td>',
                f'<td data-k="env">{esc(env_text)}</td>',
                f'<td data-k="created">{esc(src.get("created") or "–")}</td>',
            ])
        body.append(f'<tr id="prov-{esc(rid)}" data-run="{esc(rid)}"><td><code>{esc(rid)}</code></td>'
                    f"<td>{esc(src.get('role', ''))}</td><td>{n}</td>{cells}</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("run", "role", "rows", "code", "git", "python", "platform",
                                              "batchsweep", "installed packages", "environment", "created"))
    others = len(sources) - 1
    cap = ("The code hash is the code package's content (what the content key covers); git, the interpreter, "
           "platform, batchsweep version and a hash of the installed packages say what produced it."
           + (f" {others} other run{'s' if others != 1 else ''} computed rows shown here: a reused row is an "
              "earlier result with the same content key, copied and not run again." if others > 0 else ""))
    return (f'<h2 id="provenance">Provenance</h2><p class="cap">{esc(cap)}</p>'
            f'<div class="scroll"><table class="prov" id="prov"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _tip(df: pd.DataFrame, i: int, varying: list[str], dims: dict[str, Dim], chosen: str, v: float) -> str:
    task = df.at[i, "task"] if "task" in df.columns else i
    return f"task {task}: " + ", ".join(f"{p}={fmt(dims[p].values[i])}" for p in varying) + f" → {chosen} {fmt(v)}"


def _history(df: pd.DataFrame, chosen: str, maximize: bool, values: list[float]) -> str:
    if not chosen or not any(math.isfinite(v) for v in values):
        return ""
    return ('<h2>Optimisation history</h2><div class="full">'
            + svgplot.history(_col(df, "trial").tolist(), values, metric_label=chosen, maximize=maximize,
                              rounds=_col(df, "round").tolist() if "round" in df.columns else None) + "</div>"
            + f'<p class="cap">One dot per trial; the line is the best {esc(chosen)} so far'
            + ("; a dashed line marks where each round of proposals begins." if "round" in df.columns else ".")
            + "</p>")


def _importance(importance: tuple[dict[str, float], str]) -> str:
    scores, method = importance
    if not scores:
        return ""
    how = ("Optuna's fANOVA: a random forest fitted to the finished tasks splits the metric's variance among the "
           "params" if method == "fANOVA" else
           "the share of the metric's variance each param explains on its own (η², continuous params in 10 "
           "bins): for a grid or from 2,000 tasks on it is the main effect fANOVA's forest would estimate; "
           "Optuna's fANOVA is used for 50 to 1,999 tasks sampled at random when Optuna and scikit-learn are "
           "installed")
    return (f'<h2>Parameter importance</h2><div class="grid2">{svgplot.importance(scores, method=method)}</div>'
            f'<p class="cap">How much each param moves the metric, normalised to sum to 1: {esc(how)}.</p>')


def _plots(df: pd.DataFrame, varying: list[str], continuous: set[str], dims: dict[str, Dim], chosen: str,
           maximize: bool, values: list[float], top_k: int) -> str:
    out = ["<h2>Plots</h2>"]
    if len(df) > svgplot.MAX_MARKS:
        out.append(f'<p class="note" id="sampled">{len(df):,} tasks: the line, dot and bar plots draw an even sample of '
                   f"about {svgplot.MAX_MARKS:,} of them (plus the top {top_k}) so the page stays light; means, "
                   "heatmap cells, histograms and the table above use every task.</p>")
    mdim = Dim(chosen, values)
    has_values = bool(chosen) and any(math.isfinite(v) for v in values)
    if has_values and varying:
        keys = df["task"].tolist() if "task" in df.columns else list(range(len(df)))
        ranked = sorted((i for i, v in enumerate(values) if math.isfinite(v)), key=lambda i: values[i], reverse=maximize)
        tips = [_tip(df, i, varying, dims, chosen, v) for i, v in enumerate(values)]
        out.append('<div class="full">' + svgplot.parallel_coordinates(
            [dims[p] for p in varying], mdim, maximize=maximize, tips=tips, keys=keys,
            highlight=set(ranked[:top_k])) + "</div>")
        scattered = [p for p in varying if p in continuous]
        dots = (f" Params drawn at random or with many values ({', '.join(scattered)}) get one dot per task instead." if scattered else "")
        out.append(f'<p class="cap">One line per task, coloured by {esc(chosen)}; the top {top_k} are drawn bold. '
                   "Below: the mean per value (dot; the best in green) and the min–max spread over the other params."
                   f"{esc(dots)}</p>")
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
        out.append('<p class="note">No heatmap: it needs two params with a few fixed values each (at most 30), '
                   "and params drawn at random from a range have a different value in every task.</p>")
    durations = _col(df, "duration_s").tolist()
    out.append(f'<div class="grid2">{pair}{svgplot.histogram(durations, label="duration (s)")}</div>')
    out.append(_timeline(df, varying, dims))
    return "\n".join(out)


def timeline_lanes(df: pd.DataFrame) -> tuple[list[str], list[tuple[int, int]], str]:
    """Where each task ran, as timeline lanes: a lane per GPU when tasks were leased GPUs (a task on two GPUs
    is drawn on both), else per worker (a local slot, a Dask worker, an AWS container). Tasks that overlap on
    one lane (GPU shares, a Dask worker's threads) get a row each, named `LANE · 2`, … so no bar hides
    another. Returns (lane names, (lane, row of df) per bar, what the lanes are)."""
    start, end = _col(df, "started_at").tolist(), _col(df, "ended_at").tolist()
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


def _timeline(df: pd.DataFrame, varying: list[str], dims: dict[str, Dim]) -> str:
    start, end = _col(df, "started_at").tolist(), _col(df, "ended_at").tolist()
    lanes, placed, kind = timeline_lanes(df)
    if not placed:
        return '<p class="note">No timeline: no task has both a start and an end time.</p>'
    t0 = min(start[i] for _, i in placed)
    status = df["status"].astype(str).tolist() if "status" in df.columns else ["succeeded"] * len(df)
    bars = []
    for lane, i in placed:
        task = df.at[i, "task"] if "task" in df.columns else i
        params = ", ".join(f"{p}={fmt(dims[p].values[i])}" for p in varying)
        where = lanes[lane] if kind == "workers" else f"{lanes[lane]} of {df.at[i, 'worker']}"
        tip = (f"task {task} on {where}: {status[i]}, {end[i] - start[i]:.1f} s"
               + (f" ({params})" if params else ""))
        bars.append((lane, start[i] - t0, end[i] - t0, status[i], tip))
    return '<div class="full">' + svgplot.timeline(lanes, bars, over=kind) + "</div>"


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
        log = f"<details{opened}><summary>stderr tail</summary><pre>{esc(tail)}</pre></details>" if tail else ""
        items.append(f'<li><span class="pill {esc(row["status"])}">{esc(row["status"])}</span> '
                     f"<b>task {esc(task)}</b> <code>{esc(params)}</code>{esc(attempts)}: "
                     f'<span class="err">{esc(reason)}</span>{log}</li>')
    more = f"<p class='note'>… and {len(bad) - MAX_FAILURES} more.</p>" if len(bad) > MAX_FAILURES else ""
    return f'<h2 id="failures">Failures ({len(bad)})</h2><ul class="fail">{"".join(items)}</ul>{more}'
