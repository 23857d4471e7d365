"""Gather a run's store into one table: a row per task, `task`, each param, `status`, `attempts`,
`duration_s`, `exit_code`, `error`, timings and worker, then each metric (and `outputs` when any task kept
files); and what is read from such a table (its metric columns, params that had no effect, best-first order).
Writing it out is `batchsweep.report.export`'s, the report page `batchsweep.report.page`'s."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchsweep.model import LOST_REASON, State
from batchsweep.report.columns import FIXED_COLUMNS, Columns, status_record
from batchsweep.report.export import TIME_COLUMNS as TIME_COLUMNS
from batchsweep.report.export import csv_parts as csv_parts
from batchsweep.report.export import csv_text as csv_text
from batchsweep.report.export import export as export
from batchsweep.report.export import pd_object
from batchsweep.report.export import spreadsheet_safe as spreadsheet_safe
from batchsweep.report.export import to_parquet_bytes as to_parquet_bytes
from batchsweep.report.export import utf8_table as utf8_table

if TYPE_CHECKING:
    import pandas as pd

    from batchsweep.runs.run import Run

# a sweep's union table (`batchsweep.runs.history`): where each row was computed
HISTORY_COLUMNS = ("run", "key")


def gather(run: Run, *, refresh: bool = False) -> pd.DataFrame:
    import pandas as pd

    cache = run.store.results_cache_key(run.id)
    if not refresh:
        try:
            return _typed(_as_python(pd.read_parquet(io.BytesIO(run.store.backend.read_bytes(cache)))), run)
        except FileNotFoundError:
            pass
        except Exception:  # noqa: BLE001 - a damaged cache (truncated, not parquet) is rebuilt from the tasks
            run.store.warn(
                f"run {run.id}: the cached results.parquet is damaged; rebuilt from the task files"
            )
    filled = fill(run)
    frame, whole = filled.table.frame(filled.states, list(run.record.param_names))
    df = _typed(frame, run, whole)
    if filled.lasting:
        try:
            run.store.backend.write_bytes(cache, to_parquet_bytes(df, exact=True))
            write_sweep_stats(run, df.loc[df["status"] == "succeeded", "duration_s"].tolist())
        except Exception:  # noqa: BLE001 - a cache that cannot be written is only slower next time
            pass
    return df


@dataclass
class Filled:
    """A run's results as columns (`Columns`), every task's state, and whether they are final (a finished
    run whose every task's state its own status says: what may be cached)."""

    table: Columns
    states: list[str]
    lasting: bool


def fill(run: Run) -> Filled:
    """The run's results read from its store (and engine, mid-run) into columns; pandas is not imported."""
    table = Columns(run.n_tasks)
    for task in run.store.iter_tasks(run.id):  # first: a metric named like a param is told apart
        table.add_params(task.index, task.params)
    progress = run.poll()  # before the statuses: one written after this poll is still counted
    if progress.statuses is None:
        _read_statuses(run, table)
    else:  # the engine hands over what it wrote; the store has the rest
        statuses, progress = run.snapshot(progress)
        for index, status in statuses.items():
            table.add_status(index, status_record(status))
        done = [i for i, s in statuses.items() if s.state is not State.CANCELLED]
        for index, metrics in run.store.read_metrics(run.id, done).items():
            table.add_metrics(index, metrics)
    states = table.states(progress, run.record.cancelled)
    if State.LOST.value in states:  # no status says why: the engine's reason, else that much
        reasons = run.engine.failure_reasons()
        for index, state in enumerate(states):
            if state == State.LOST.value and not table.has_status(index):
                table.set_error(index, reasons.get(index) or LOST_REASON)
    if progress.active:  # mid-run: a running task's latest values from its series, marked partial
        unfinished = [i for i, s in enumerate(states) if s in (State.PENDING.value, State.RUNNING.value)
                      and not table.has_status(i)]
        for index, (step, values) in latest_values(run, unfinished).items():
            table.add_metrics(index, values, live_step=step)
    finished = all(State(s).done for s in set(states)) and not progress.active
    # A task lost without a status of its own is the engine's guess (Batch's state, which may run ahead of a
    # container's upload, or a player that runs it later): a cache would keep the guess after the status
    # lands.
    guessed = any(state == State.LOST.value and not table.has_status(i) for i, state in enumerate(states))
    return Filled(table, states, finished and not guessed)


def _read_statuses(run: Run, table: Columns) -> None:
    """Statuses and metrics from the packs (an AWS child's summary, a Dask worker's, a compacted run),
    streamed in as each arrives; the tasks no pack covers from their own files."""
    store = run.store
    for index, status, metrics in store.pack_records(run.id):
        table.add_status(index, status)
        table.add_metrics(index, metrics if status["state"] != State.CANCELLED.value else None)
    packed = _Covered(table)
    unpacked = store.unpacked_statuses(run.id, packed, run.n_tasks)
    for index, one in unpacked.items():
        table.add_status(index, status_record(one))
    done = [i for i, s in unpacked.items() if s.state is not State.CANCELLED]
    for index, metrics in store.read_metrics(run.id, done, packs=False).items():
        table.add_metrics(index, metrics)


class _Covered:
    """The tasks that have a status in the table so far (what the packs covered)."""

    def __init__(self, table: Columns) -> None:
        self.table = table

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and 0 <= index < self.table.n and self.table.has_status(index)


def latest_values(run: Run, indices: list[int]) -> dict[int, tuple[Any, dict[str, Any]]]:
    """The last step of each task's series and the latest value of each metric in it (tasks without one are
    left out)."""
    from batchsweep.task.series import number, parse

    keys = [run.store.task_series_key(run.id, i) for i in indices]
    out: dict[int, tuple[Any, dict[str, Any]]] = {}
    for index, raw in zip(indices, run.store._read_many(keys)):
        records = parse(raw) if raw else []
        if not records:
            continue
        values: dict[str, Any] = {}
        for record in records:
            values.update(
                {k: v for k, v in record.items() if k not in ("step", "t") and number(v) is not None}
            )
        out[index] = (max(number(r["step"]) or 0 for r in records), values)
    return out


def _typed(df: pd.DataFrame, run: Run, whole: set[str] | None = None) -> pd.DataFrame:
    """One type per column, however the table was made: `outputs` a list on every row (parquet gives numpy
    arrays), metrics whose values are all whole numbers nullable integers (a missing row must not turn 12
    into 12.0; the parquet cache keeps the type)."""
    if "attempts" in df:
        df["attempts"] = df["attempts"].astype("int64")
    if "partial" in df:
        df["partial"] = df["partial"].fillna(False).astype(bool)
    if "outputs" in df:
        df["outputs"] = [
            list(v) if isinstance(v, (list, tuple)) or hasattr(v, "tolist") else [] for v in df["outputs"]
        ]
    for col in ["exit_code", *metric_columns(run, df)]:
        if col in df and (col == "exit_code" or (whole is not None and col in whole)):
            df[col] = df[col].astype("Int64")
    return df


def _as_python(df: pd.DataFrame) -> pd.DataFrame:
    """A table read back from Parquet with its lists and dicts as the ones it was written from: pyarrow gives
    a list cell back as a numpy array (printed `[1 2]`, compared elementwise), inside dicts too."""
    for name in df.columns:
        if df[name].dtype == object:
            df[name] = pd_object([_plain(v) for v in df[name].tolist()], df.index)
    return df


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def write_sweep_stats(run: Run, durations: list[Any]) -> None:
    """The median task time of a finished run (`durations`: its succeeded tasks') sizes the next submit of the
    same sweep (engines that pack tasks by it), in the run's store and in the local store that points to it:
    `estimate`, a dry run and the submit read it there without calling AWS
    (`runs.estimate.packing_durations`)."""
    import statistics

    known = [float(d) for d in durations if d is not None and d == d]
    if known:
        stats = {"median_task_s": statistics.median(known), "run_id": run.id, "tasks": len(known),
                 "backend": run.record.backend, "created_ts": run.record.created_ts}
        for store in {id(s): s for s in (run.store, run.home) if s is not None}.values():
            store.write_json(store.sweep_stats_key(run.name), stats)


def metric_columns(run: Run, df: pd.DataFrame) -> list[str]:
    return metric_names(run, df.columns)


def metric_names(run: Run, columns: Iterable[Any]) -> list[str]:
    known = {"task", "outputs", *FIXED_COLUMNS, *HISTORY_COLUMNS, *run.record.param_names}
    return [c for c in columns if c not in known]


SAME_METRICS_READ = 2000  # succeeded tasks read at most, in chunks, stopping at the first difference
SAME_METRICS_READ_REMOTE = 200  # on S3 a task's metrics not in a pack are a GET each


def _swept(params: dict[str, Any]) -> str:
    from batchsweep.model import OWN_PARAMS

    return json.dumps({k: v for k, v in params.items() if not k.startswith("_") and k not in OWN_PARAMS},
                      sort_keys=True, default=str)


def same_metrics_line(n: int, *, partial: bool = False) -> str:
    return (f"{'the first ' if partial else 'all '}{n} succeeded tasks gave identical metrics: "
            "do the params reach the script?")


def identical_metrics(run: Run, succeeded: Sequence[int]) -> str | None:
    """The warning for a sweep whose params had no effect: at least two distinct param sets (batchsweep's own
    `repeat`/`trial` and `_` params aside) and every succeeded task's metrics the same. Reads the tasks'
    metrics a chunk at a time and stops at the first difference, so a sweep whose params matter costs a read
    or two."""
    if len(succeeded) < 2:
        return None
    indices = sorted(succeeded)[:SAME_METRICS_READ if run.store.is_local else SAME_METRICS_READ_REMOTE]
    first: str | None = None
    # streamed: a compacted run's packs are not cached
    for metrics in run.store.iter_metrics(run.id, indices):
        text = json.dumps(metrics, sort_keys=True, default=str)
        if first is None:
            first = text
        elif text != first:
            return None
    if first is None or first == "{}":
        return None
    wanted = set(indices)
    shapes = {_swept(t.params) for t in run.store.iter_tasks(run.id) if t.index in wanted}
    if len(shapes) < 2:
        return None
    return same_metrics_line(len(indices), partial=len(indices) < len(succeeded))


def identical_in_table(run: Run, df: pd.DataFrame) -> str | None:
    """`identical_metrics` for a results table (the report's)."""
    if "status" not in df.columns or "task" not in df.columns:
        return None
    ok = df[df["status"] == State.SUCCEEDED.value]
    metrics = [c for c in metric_columns(run, df) if c in ok.columns]
    params = [p for p in run.record.param_names if p in ok.columns]
    if len(ok) < 2 or not metrics or not params:
        return None
    from batchsweep.model import OWN_PARAMS

    swept = [p for p in params if not p.startswith("_") and p not in OWN_PARAMS]
    rows = ok[metrics].astype(str).drop_duplicates()
    if len(rows) != 1 or ok[metrics].isna().all(axis=None):
        return None
    if not swept or len(ok[swept].astype(str).drop_duplicates()) < 2:
        return None
    return same_metrics_line(len(ok))


def derived_params(run: Run) -> list[str]:
    """Params made from other params by a `{placeholder}` (`save_name: run_{a}_{b}`): they follow the sweep's
    dimensions, they are not dimensions of their own."""
    params = run.record.spec.params
    fixed = params.fixed if params else {}
    return [k for k, v in fixed.items() if isinstance(v, str) and re.search(r"\{[A-Za-z_][A-Za-z0-9_]*\}", v)]


def sort_best_first(df: pd.DataFrame, key: str, *, ascending: bool | None = None,
                    metrics: list[str] | None = None) -> tuple[pd.DataFrame, str]:
    """Sort by `key` (`-COL` largest first, `+COL` smallest first); without a direction, best first by the
    report's rule (loss, error, time... ascending; other metrics descending; other columns ascending).
    Missing values go last. Returns the table and a sentence saying which order was used."""
    column, ascending, note = sort_order(list(df.columns), key, ascending=ascending, metrics=metrics,
                                         values=lambda c: df[c].tolist())
    try:
        out = df.sort_values(column, ascending=ascending, na_position="last", kind="stable")
    except TypeError:  # mixed types (choice(1, "a")): as text
        out = df.sort_values(column, ascending=ascending, na_position="last", kind="stable",
                             key=lambda s: s.map(lambda v: None if v is None else str(v)))
    return out, note


def sort_order(columns: list[Any], key: str, *, ascending: bool | None, metrics: list[str] | None,
               values: Callable[[str], list[Any]]) -> tuple[str, bool, str]:
    """`sort_best_first`'s choice for a table of these `columns` (`values(column)`: a column's values):
    the column, ascending or not, and the sentence saying so."""
    from batchsweep.errors import SweepError
    from batchsweep.metrics import direction_from_name

    column = key[1:] if key[:1] in "+-" and key[1:] in columns else key
    if column not in columns:
        raise SweepError(f"--sort {key}: no such column; columns are: {', '.join(map(str, columns))}")
    if ascending is not None:
        why = "as asked"
    elif column != key:
        ascending, why = key[0] == "+", f"from the {key[0]} prefix"
    else:
        up = direction_from_name(column, values(column))
        if up is not None and "drawdown" in column.lower() and up:
            ascending, why = False, "a negative drawdown is best closest to 0"
        elif up is not None:
            ascending, why = not up, f"{'higher' if up else 'lower'} is better by its name"
        elif metrics is not None and column in metrics:
            ascending, why = False, "a metric whose name does not say"
        else:
            ascending, why = True, "not a metric"
    flip = "--desc" if ascending else "--asc"
    way = "ascending" if ascending else "descending"
    return column, ascending, f"sorted by {column}, {way}: {why} ({flip} flips)"
