"""Gather a run's store into one table: a row per task, `task`, each param, `status`, `attempts`, `duration_s`,
`exit_code`, `error`, timings and worker, then each metric (and `outputs` when any task kept files)."""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchsweep.model import LOST_REASON, State
from batchsweep.report.columns import FIXED_COLUMNS, Columns, status_record
from batchsweep.text import is_missing, utf8

if TYPE_CHECKING:
    import pandas as pd

    from batchsweep.runs.run import Run
    from batchsweep.store.record import RunRecord

HISTORY_COLUMNS = ("run", "key")  # a sweep's union table (`batchsweep.runs.history`): where each row was computed


def gather(run: Run, *, refresh: bool = False) -> pd.DataFrame:
    import pandas as pd

    cache = run.store.results_cache_key(run.id)
    if not refresh:
        try:
            return _typed(pd.read_parquet(io.BytesIO(run.store.backend.read_bytes(cache))), run)
        except FileNotFoundError:
            pass
        except Exception:  # noqa: BLE001 - a damaged cache (truncated, not parquet) is rebuilt from the tasks
            run.store.warn(f"run {run.id}: the cached results.parquet is damaged; rebuilt from the task files")
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
    missing = State.PENDING
    if not progress.active:
        missing = State.CANCELLED if run.record.cancelled else progress.missing
    states = table.states(missing, progress.running_tasks if progress.active else ())
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
    frame, whole = table.frame(states, list(run.record.param_names))
    df = _typed(frame, run, whole)
    finished = all(State(s).done for s in set(states)) and not progress.active
    # A task lost without a status of its own is the engine's guess (Batch's state, which may run ahead of a
    # container's upload, or a player that runs it later): a cache would keep the guess after the status lands.
    guessed = any(state == State.LOST.value and not table.has_status(i) for i, state in enumerate(states))
    if finished and not guessed:
        try:
            run.store.backend.write_bytes(cache, to_parquet_bytes(df, exact=True))
            _write_sweep_stats(run, df)
        except Exception:  # noqa: BLE001 - a cache that cannot be written is only slower next time
            pass
    return df


def _read_statuses(run: Run, table: Columns) -> None:
    """Statuses and metrics from the packs (an AWS child's summary, a Dask worker's, a compacted run), streamed
    in as each arrives; the tasks no pack covers from their own files."""
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
            values.update({k: v for k, v in record.items() if k not in ("step", "t") and number(v) is not None})
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
        df["outputs"] = [list(v) if isinstance(v, (list, tuple)) or hasattr(v, "tolist") else [] for v in df["outputs"]]
    for col in ["exit_code", *metric_columns(run, df)]:
        if col in df and (col == "exit_code" or (whole is not None and col in whole)):
            df[col] = df[col].astype("Int64")
    return df


def _write_sweep_stats(run: Run, df: pd.DataFrame) -> None:
    """The median task time of a finished run sizes the next submit of the same sweep (engines that pack tasks by
    it), in the run's store and in the local store that points to it: `estimate`, a dry run and the submit read
    it there without calling AWS (`runs.estimate.packing_durations`)."""
    durations = df.loc[df["status"] == "succeeded", "duration_s"].dropna()
    if len(durations):
        stats = {"median_task_s": float(durations.median()), "run_id": run.id, "tasks": len(durations),
                 "backend": run.record.backend, "created_ts": run.record.created_ts}
        for store in {id(s): s for s in (run.store, run.home) if s is not None}.values():
            store.write_json(store.sweep_stats_key(run.name), stats)


def to_parquet_bytes(df: pd.DataFrame, *, exact: bool = False) -> bytes:
    """The table as Parquet. A column Parquet cannot type as it is (mixed values: `choice(1, "a")`, a list param
    beside a scalar one, a whole number past int64, text UTF-8 cannot hold) is written as text, each value as
    JSON writes it (a string as itself); `exact`: raise instead (the results cache must give back what it got)."""
    buf = io.BytesIO()
    try:
        df.to_parquet(buf, index=False)
    except Exception:  # noqa: BLE001 - pyarrow's errors for what it cannot type are of several kinds
        if exact:
            raise
        buf = io.BytesIO()
        _as_text_where_needed(utf8_table(df)).to_parquet(buf, index=False)
    return buf.getvalue()


def _as_text_where_needed(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for name in out.columns:
        if out[name].dtype != object:
            continue
        try:
            out[[name]].to_parquet(io.BytesIO(), index=False)
        except Exception:  # noqa: BLE001 - as above
            out[name] = pd_object([None if is_missing(v) else v if isinstance(v, str) else
                                   json.dumps(v, default=str, ensure_ascii=False) for v in out[name].tolist()])
    return out


def pd_object(values: list[Any]) -> Any:
    import pandas as pd

    return pd.Series(values, dtype=object)


def utf8_table(df: pd.DataFrame) -> pd.DataFrame:
    """The table with its text (column names, text cells, the texts inside list cells: `outputs`) as UTF-8 can
    hold it (`text.utf8`): what a UTF-8 file format gets."""
    def fix(value: Any) -> Any:
        if isinstance(value, str):
            return utf8(value)
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    out = df.copy()
    if any(isinstance(c, str) and utf8(c) != c for c in df.columns):
        import pandas as pd

        out.columns = pd.Index([utf8(c) if isinstance(c, str) else c for c in df.columns])
    for name in out.columns:
        if out[name].dtype == object:
            values = out[name].tolist()
            fixed = [fix(v) for v in values]
            if fixed != values:
                out[name] = pd_object(fixed)
    return out


def metric_columns(run: Run, df: pd.DataFrame) -> list[str]:
    known = {"task", "outputs", *FIXED_COLUMNS, *HISTORY_COLUMNS, *run.record.param_names}
    return [c for c in df.columns if c not in known]


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
    `repeat`/`trial` and `_` params aside) and every succeeded task's metrics the same. Reads the tasks' metrics
    a chunk at a time and stops at the first difference, so a sweep whose params matter costs a read or two."""
    if len(succeeded) < 2:
        return None
    indices = sorted(succeeded)[:SAME_METRICS_READ if run.store.is_local else SAME_METRICS_READ_REMOTE]
    first: str | None = None
    for metrics in run.store.iter_metrics(run.id, indices):  # streamed: a compacted run's packs are not cached
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
    from batchsweep.errors import SweepError
    from batchsweep.metrics import direction_from_name

    column = key[1:] if key[:1] in "+-" and key[1:] in df.columns else key
    if column not in df.columns:
        raise SweepError(f"--sort {key}: no such column; columns are: {', '.join(map(str, df.columns))}")
    if ascending is not None:
        why = "as asked"
    elif column != key:
        ascending, why = key[0] == "+", f"from the {key[0]} prefix"
    else:
        up = direction_from_name(column, df[column].tolist())
        if up is not None and "drawdown" in column.lower() and up:
            ascending, why = False, "a negative drawdown is best closest to 0"
        elif up is not None:
            ascending, why = not up, f"{'higher' if up else 'lower'} is better by its name"
        elif metrics is not None and column in metrics:
            ascending, why = False, "a metric whose name does not say"
        else:
            ascending, why = True, "not a metric"
    try:
        out = df.sort_values(column, ascending=ascending, na_position="last", kind="stable")
    except TypeError:  # mixed types (choice(1, "a")): as text
        out = df.sort_values(column, ascending=ascending, na_position="last", kind="stable",
                             key=lambda s: s.map(lambda v: None if v is None else str(v)))
    flip = "--desc" if ascending else "--asc"
    return out, f"sorted by {column}, {'ascending' if ascending else 'descending'}: {why} ({flip} flips)"


def export(df: pd.DataFrame, fmt: str, path: str | os.PathLike[str] | None) -> str | None:
    """Write the table as csv/json/parquet (to path) or return it as text. `table` is the CLI's business."""
    df = utf8_table(_times_as_dates(df, text=fmt == "csv"))
    if fmt == "parquet":
        if path is None:
            raise ValueError("parquet needs -o FILE")
        Path(path).write_bytes(to_parquet_bytes(df))
        return None
    if fmt == "csv" and "outputs" in df:
        df = df.assign(outputs=[";".join(map(str, v)) if isinstance(v, list) else "" for v in df["outputs"]])
    if fmt == "csv":
        df = spreadsheet_safe(df)
    parts = csv_parts(df) if fmt == "csv" else iter([str(df.to_json(orient="records", indent=1))])
    if path is not None:
        with open(path, "w") as out:  # a part at a time: the text of 100,000 rows is never one string
            out.writelines(parts)
        return None
    return "".join(parts)


TIME_COLUMNS = ("started_at", "ended_at")  # seconds since the epoch in the table the API returns


def _times_as_dates(df: pd.DataFrame, *, text: bool) -> pd.DataFrame:
    """The table with its epoch-second columns as times a reader of the file sees as times: ISO-8601 text with its
    time zone (UTC, `2026-12-07T04:10:00.123456+00:00`) for CSV, datetime columns in UTC for Parquet; JSON keeps
    the numbers."""
    import pandas as pd

    times = [c for c in TIME_COLUMNS if c in df.columns and df[c].dtype.kind in "iuf"]
    if not times:
        return df
    out = df.copy()
    for name in times:
        # to the microsecond, the most an epoch float of today holds: no `.002000093` of float noise in the text
        when = pd.to_datetime(out[name], unit="s", utc=True).dt.round("us")
        out[name] = when.map(lambda t: None if pd.isna(t) else t.isoformat()).astype("string") if text else when
    return out


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _inert(text: Any) -> Any:
    return "'" + text if isinstance(text, str) and text.startswith(_FORMULA_START) else text


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """The table with each text cell and column name that a spreadsheet would run as a formula (it starts with
    =, +, -, @, a tab or a CR: a task's metric or error, say) made inert by a leading `'`."""
    out = df.rename(columns={c: _inert(c) for c in df.columns})
    for name in out.columns:
        column = out[name]
        if column.dtype.kind in "biufcmM":  # numbers, booleans, times: never text
            continue
        inert = column.map(_inert)
        if not inert.equals(column):
            out[name] = inert.astype(column.dtype)
    return out


def csv_text(df: pd.DataFrame) -> str:
    return "".join(csv_parts(df))


def csv_parts(df: pd.DataFrame) -> Iterator[str]:
    """`df.to_csv(index=False)` in parts, the same bytes, made a column at a time and 10,000 rows at a time when
    every column is of a type pandas writes as Python prints it (float64 as `repr`, ints, bools, nullable ints
    and booleans, text): about 60% of the CPU for 100,000 rows. Any other table (an object column, one column,
    no rows) is pandas' to write, in one part."""
    import numpy as np
    import pandas as pd

    if len(df.columns) < 2 or not len(df) or not all(isinstance(c, str) for c in df.columns):
        yield str(df.to_csv(index=False))  # one field on a row: an empty one is written ""
        return
    columns: list[tuple[Callable[[Any], list[str]], Any]] = []
    for name in df.columns:
        series, dtype = df[name], df[name].dtype
        if dtype == np.float64:
            columns.append((_csv_floats, series.to_numpy()))
        elif dtype == np.int64 or dtype == np.bool_:
            columns.append((_csv_plain, series.to_numpy()))
        elif isinstance(dtype, (pd.Int64Dtype, pd.BooleanDtype)):
            columns.append((_csv_missing, series.array))
        elif isinstance(dtype, pd.StringDtype):
            columns.append((_csv_texts, series.array))
        elif dtype.kind == "O" and all(v is None or isinstance(v, str) for v in series):
            # Text before pandas 3 (object dtype): written here too, so a bare CR is quoted as above.
            columns.append((_csv_texts, pd.array(series, dtype="string")))
        else:
            yield str(df.to_csv(index=False))
            return
    yield ",".join(_csv_quoted([str(c) for c in df.columns])) + "\n"
    for start in range(0, len(df), 10_000):
        made = [write(values[start:start + 10_000]) for write, values in columns]
        yield "\n".join(map(",".join, zip(*made))) + "\n"


def _csv_floats(values: Any) -> list[str]:
    """pandas writes numpy's str of each float64, the shortest repr as Python's; NaN is empty."""
    import numpy as np

    if np.isnan(values).any():
        return [repr(v) if v == v else "" for v in values.tolist()]
    return list(map(repr, values.tolist()))


def _csv_plain(values: Any) -> list[str]:
    return list(map(str, values.tolist()))


def _csv_missing(values: Any) -> list[str]:
    return ["" if v is None else str(v) for v in values.to_numpy(dtype=object, na_value=None).tolist()]


def _csv_texts(values: Any) -> list[str]:
    return _csv_quoted(_csv_missing(values))


def _csv_quoted(texts: list[str]) -> list[str]:
    """Texts as the csv module writes them in a row of several (quoted when they hold a comma, a quote or a line
    break): the few that need it are written by the csv module itself."""
    import csv

    joined = "".join(texts)
    if not any(c in joined for c in ',"\r\n'):
        return texts

    def one(text: str) -> str:
        if not any(c in text for c in ',"\r\n'):
            return text
        if "\r" in text:  # the csv module leaves a bare CR unquoted, which a reader takes for a line break
            return '"' + text.replace('"', '""') + '"'
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([text, ""])
        return buf.getvalue()[:-2]  # less the empty second field's comma and the line's end

    return [one(t) for t in texts]


def write_report(run: Run, path: str | os.PathLike[str] | None = None, *, metric: str | None = None,
                 maximize: bool | None = None, table: pd.DataFrame | None = None,
                 runs: dict[str, Run] | None = None, extra: Sequence[str] = ()) -> Any:
    """The run's HTML report; `table` replaces its results (a sweep's union table, see `batchsweep.runs.history`, whose
    `runs` are the sweep's runs by id). Without `path`, the page (in a notebook: displayed inline)."""
    html, chosen, maximize = render_report(run, metric=metric, maximize=maximize, table=table, runs=runs, extra=extra)
    if path is None:
        try:
            from IPython.display import HTML
        except ImportError:
            return html
        return HTML(inline_html(html))
    Path(path).write_text(html, encoding="utf-8")
    return chosen, maximize


def render_report(run: Run, *, metric: str | None = None, maximize: bool | None = None,
                  table: pd.DataFrame | None = None, runs: dict[str, Run] | None = None,
                  live: dict[str, Any] | None = None, extra: Sequence[str] = ()) -> tuple[str, str, bool]:
    """The report page of the run as the store has it now: `(html, chosen metric, maximize)`. `live`: the page
    is served while the run may still be going (`batchsweep.report.serve`), see `build_report`."""
    from batchsweep.report.html import build_report

    df = gather(run) if table is None else table
    if "key" not in df.columns:
        keys = {t.index: t.cache_key for t in run.tasks()}
        df = df.assign(key=[keys.get(i) or None for i in df["task"]])
    record = run.record
    summary: dict[str, Any] = {"run_id": record.run_id, "name": record.name, "backend": record.backend,
                               "created": record.created, "n_tasks": record.n_tasks}
    if record.spec.search is not None:
        summary["search_trials"] = record.spec.search.trials
    summary.update(_cost_fields(run, df))
    # A text param unique to every task, or one made of other params by a placeholder (`save_name: run_{a}_{b}`),
    # names the task; it is not a dimension.
    derived = derived_params(run)
    params = [p for p in record.param_names if p in derived
              or not (p in df and len(df) > 2 and df[p].dtype == object and df[p].astype(str).nunique() == len(df))]
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
        log_tail=lambda i: "\n".join(run.logs(i, stderr=True).splitlines()[-20:]), metric=metric, maximize=maximize,
        derived=derived, sampled=sampled, log_params=log_params, series=read_series(run), sources=provenance_sources(run, df, runs or {}),
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
    """The provenance of the run, then of every other run the table's rows were computed in (`reused_from`, or a
    sweep's `run` column), read from run.json; a run no longer in the store is marked `found: False`."""
    from batchsweep.errors import RunDamaged, RunNotFound
    from batchsweep.store.record import RunRecord

    def one(run_id: str, role: str, record: RunRecord | None) -> dict[str, Any]:
        if record is None:
            return {"run_id": run_id, "role": role, "found": False}
        return {"run_id": run_id, "role": role, "found": True, "code_hash": record.code_hash,
                "provenance": record.provenance, "env": record.spec.env, "created": record.created}

    named: list[str] = []
    for value in [*(df["run"] if "run" in df.columns else []), *(df["reused_from"] if "reused_from" in df else [])]:
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


def read_series(run: Run) -> dict[int, list[dict[str, Any]]]:
    """Every task's series (metrics.jsonl), for the report's curves; tasks without one are left out."""
    from batchsweep.store.core import TaskDir
    from batchsweep.task.series import parse

    listed = run.store.task_files(run.id, TaskDir.SERIES)
    out = {}
    for index, raw in zip(listed, run.store._read_many(list(listed.values()))):
        records = parse(raw) if raw else []
        if records:
            out[index] = records
    return out


def _stop_fields(run: Run) -> dict[str, Any]:
    from batchsweep.task.stopping import saved_seconds

    stop = run.record.spec.stop
    saved = saved_seconds(run.statuses()) if stop else None
    return {"stop_metric": stop.metric if stop else None, **({"stop_saved": saved[0]} if saved else {})}


def inline_html(page: str, *, height: int = 900) -> str:
    """The report inside a notebook cell: in an iframe, so the page's own CSS and script leave the notebook alone."""
    from html import escape

    return (f'<iframe srcdoc="{escape(page, quote=True)}" style="width:100%;height:{height}px;border:0" '
            'sandbox="allow-scripts"></iframe>')


def _num(value: Any) -> float | None:
    return None if value is None or value != value else float(value)  # NaN from an empty cell


def _cost_fields(run: Run, df: pd.DataFrame) -> dict[str, Any]:
    from batchsweep.report.cost import container_seconds, cost_summary, run_cost

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
