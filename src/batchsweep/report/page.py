"""A run's HTML report page: the results table gathered, the run's summary (cost, stopping, provenance,
right-sizing), each task's series for the curves, handed to `batchsweep.report.html.build_report`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchsweep.model import State
from batchsweep.report.results import derived_params, gather, identical_in_table, metric_columns

if TYPE_CHECKING:
    import pandas as pd

    from batchsweep.runs.run import Run
    from batchsweep.store.record import RunRecord


def write_report(run: Run, path: str | os.PathLike[str] | None = None, *, metric: str | None = None,
                 maximize: bool | None = None, table: pd.DataFrame | None = None,
                 runs: dict[str, Run] | None = None, extra: Sequence[str] = ()) -> Any:
    """The run's HTML report; `table` replaces its results (a sweep's union table, see
    `batchsweep.runs.history`, whose `runs` are the sweep's runs by id). Without `path`, the page (in a
    notebook: displayed inline)."""
    html, chosen, maximize = render_report(run, metric=metric, maximize=maximize, table=table, runs=runs,
                                           extra=extra)
    return deliver(html, path, (chosen, maximize))


def deliver(html: str, path: str | os.PathLike[str] | None, written: tuple[str, bool]) -> Any:
    """Write a page to `path` and return `written` (the metric it ranks by and its direction); without a path,
    the page itself (in a notebook: an IPython HTML object, shown inline)."""
    if path is None:
        try:
            from IPython.display import HTML
        except ImportError:
            return html
        return HTML(inline_html(html))
    Path(path).write_text(html, encoding="utf-8")
    return written


def render_report(run: Run, *, metric: str | None = None, maximize: bool | None = None,
                  table: pd.DataFrame | None = None, runs: dict[str, Run] | None = None,
                  live: dict[str, Any] | None = None, extra: Sequence[str] = ()) -> tuple[str, str, bool]:
    """The report page of the run as the store has it now: `(html, chosen metric, maximize)`. `live`: the page
    is served while the run may still be going (`batchsweep.report.serve`), see `build_report`."""
    from batchsweep.report.html import build_report

    df = gather(run) if table is None else table
    if "key" not in df.columns:
        keys = {t.index: t.cache_key for t in run.store.iter_tasks(run.id)}  # not a list of 100,000 Tasks
        df = df.assign(key=[keys.get(i) or None for i in df["task"]])
    record = run.record
    summary: dict[str, Any] = {"run_id": record.run_id, "name": record.name, "backend": record.backend,
                               "created": record.created, "n_tasks": record.n_tasks}
    if record.spec.search is not None:
        summary["search_trials"] = record.spec.search.trials
    summary.update(_cost_fields(run, df))
    # A text param unique to every task, or one made of other params by a placeholder
    # (`save_name: run_{a}_{b}`),
    # names the task; it is not a dimension.
    derived = derived_params(run)
    params = [p for p in record.param_names if p in derived
              or not (p in df and len(df) > 2 and df[p].dtype == object
                      and df[p].astype(str).nunique() == len(df))]
    sampled, log_params = sampled_params(record)
    summary.update(_stop_fields(run))
    same = identical_in_table(run, df)
    if same:
        summary["same_metrics"] = same
    if table is None:
        from batchsweep.report.cost import run_right_size, usage_of_table

        suggestion = run_right_size(record, usage=usage_of_table(df))
        if suggestion is not None:
            summary["right_size"] = suggestion.line()
    html, chosen, maximize = build_report(
        df, params=params, metrics=metric_columns(run, df), summary=summary,
        log_tail=lambda i: "\n".join(run.logs(i, stderr=True).splitlines()[-20:]), metric=metric,
        maximize=maximize, derived=derived, sampled=sampled, log_params=log_params,
        series=read_series(run, df if table is None else None),
        sources=provenance_sources(run, df, runs or {}),
        live=live, extra=extra,
    )
    return html, chosen, maximize


def sampled_params(record: RunRecord) -> tuple[list[str], list[str]]:
    """The params drawn from a distribution (a search's space, `params.random`'s), and those of them whose
    distribution is logarithmic: their axis is logarithmic, and only theirs (uniform(0, 1) stays linear)."""
    from batchsweep.spec.distributions import parse as parse_distribution

    spec = record.spec
    space = {**(spec.search.space if spec.search else {}),
             **(spec.params.random.space if spec.params and spec.params.random else {})}
    return list(space), [p for p, d in space.items() if parse_distribution(d, where=p).kind == "loguniform"]


def provenance_sources(run: Run, df: pd.DataFrame, runs: dict[str, Run]) -> list[dict[str, Any]]:
    """The provenance of the run, then of every other run the table's rows were computed in (`reused_from`, or
    a sweep's `run` column), read from run.json; a run no longer in the store is marked `found: False`."""
    from batchsweep.errors import RunDamaged, RunNotFound
    from batchsweep.store.record import RunRecord

    def one(run_id: str, role: str, record: RunRecord | None) -> dict[str, Any]:
        if record is None:
            return {"run_id": run_id, "role": role, "found": False}
        return {"run_id": run_id, "role": role, "found": True, "code_hash": record.code_hash,
                "provenance": record.provenance, "env": record.spec.env, "created": record.created}

    named: list[str] = []
    named_in = [*(df["run"] if "run" in df.columns else []),
                *(df["reused_from"] if "reused_from" in df else [])]
    for value in named_in:
        rid = str(value).rsplit("/", 1)[0] if "/" in str(value) else str(value)
        if isinstance(value, str) and value and rid != run.id and rid not in named:
            named.append(rid)
    out = [one(run.id, "this run", run.record)]
    for rid in sorted(named):
        record: RunRecord | None
        try:
            record = runs[rid].record if rid in runs else RunRecord.of_run(rid, run.store.run_info(rid))
        except (RunNotFound, RunDamaged):
            record = None
        role = "a run of the sweep" if rid in runs else "reused rows"
        out.append(one(rid, role, record))
    return out


# A status whose state `ran` was written by the task's worker, which records the last step of the task's
# series (`last_step`) whenever it has one: such a task without a last step has no series to read.
_WORKER_STATES = frozenset(s.value for s in State if s.ran)


def read_series(run: Run, table: pd.DataFrame | None = None) -> dict[int, list[dict[str, Any]]]:
    """Every task's series (metrics.jsonl), for the report's curves; tasks without one are left out. The
    tasks' statuses (the run's results `table`, else `run.statuses()`) say which finished tasks have one, so
    only those and the tasks without a status are read: one request each when they are few (PACK_GAP_GETS),
    else one listing of the run's tasks (1 LIST per 1,000 keys on S3) finds them."""
    from batchsweep.store.core import PACK_GAP_GETS, TaskDir
    from batchsweep.task.series import parse

    store = run.store
    without = _without_series(run, table)
    candidates = [i for i in range(run.n_tasks) if i not in without]
    keys: dict[int, str]
    if len(candidates) <= PACK_GAP_GETS:
        keys = {i: store.task_series_key(run.id, i) for i in candidates}
    else:
        keys = store.task_files(run.id, TaskDir.SERIES)
    out = {}
    for index, raw in zip(keys, store._read_many(list(keys.values()))):
        records = parse(raw) if raw else []
        if records:
            out[index] = records
    return out


def _without_series(run: Run, table: pd.DataFrame | None) -> set[int]:
    """The tasks whose status says they have no series: finished by their worker with no last step."""
    if table is not None and {"task", "status"} <= set(table.columns):
        steps = table["last_step"].isna() if "last_step" in table.columns else [True] * len(table)
        return {int(task) for task, state, none in zip(table["task"], table["status"], steps)
                if none and state in _WORKER_STATES}
    return {i for i, s in run.statuses().items() if s.last_step is None and s.state.value in _WORKER_STATES}


def _stop_fields(run: Run) -> dict[str, Any]:
    from batchsweep.task.stopping import saved_seconds

    stop = run.record.spec.stop
    saved = saved_seconds(run.statuses()) if stop else None
    return {"stop_metric": stop.metric if stop else None, **({"stop_saved": saved[0]} if saved else {})}


def inline_html(page: str, *, height: int = 900) -> str:
    """The report inside a notebook cell: in an iframe, so the page's own CSS and script leave the notebook
    alone."""
    from html import escape

    return (f'<iframe srcdoc="{escape(page, quote=True)}" style="width:100%;height:{height}px;border:0" '
            'sandbox="allow-scripts"></iframe>')


def _num(value: Any) -> float | None:
    return None if value is None or value != value else float(value)  # NaN from an empty cell


def _cost_fields(run: Run, df: pd.DataFrame) -> dict[str, Any]:
    from batchsweep.report.cost import container_seconds, cost_summary, run_cost
    from batchsweep.report.tasktable import reused_from

    df = df[~reused_from(df).astype(bool)]  # reused rows were paid for by the runs they came from
    durations = df["duration_s"].dropna().tolist() if "duration_s" in df else []
    spans = df[["worker", "started_at", "ended_at"]].itertuples(index=False, name=None) \
        if {"worker", "started_at", "ended_at"} <= set(df.columns) else ()
    est = run_cost(run.record, durations, containers_s=container_seconds(
        (w if isinstance(w, str) else None, _num(s), _num(e)) for w, s, e in spans)) if durations else None
    if est is None:
        return {}
    note = (f"{cost_summary(est)}; the card shows the upper end. An estimate from a price table, not a bill. "
            "It assumes: " + "; ".join(est.assumptions))
    return {"cost_usd": est.high_usd, "cost_note": note}
