"""A run's results table built column by column: one list per column, indexed by task, filled as the store is
read (packs as they arrive, then status and metrics files, then tasks.jsonl). A run of 100,000 tasks is never
held as 100,000 row dicts or status objects (`batchsweep.report.results.gather` turns the columns into the
DataFrame).

Columns, in this order: `task`, the params (the spec's names first), the fixed columns that every row has, the
optional ones some row has (`gpu`, `last_step`, `partial`, `reused_from`...), the metrics in the order they
first appear (by task), and `outputs` when any task kept files. A metric named like another column is
`metric_<name>`."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

from batchsweep.model import OPTIONAL_COLUMNS, STATUS_COLUMNS, State, TaskStatus
from batchsweep.text import encodable

if TYPE_CHECKING:
    from batchsweep.engines.base import Progress

ALWAYS = STATUS_COLUMNS
OPTIONAL = OPTIONAL_COLUMNS
FIXED_COLUMNS = (*ALWAYS, *OPTIONAL)
_FROM_STATUS = ("attempts", "exit_code", "error", "started_at", "ended_at", "worker", "peak_rss_mib", "cpu_s",
                "gpu", "gpu_mem_mib", "last_step", "reused_from", "warm", "host")
_STATUS_FIELDS = tuple(f.name for f in fields(TaskStatus))


def status_record(status: TaskStatus) -> dict[str, Any]:
    """A TaskStatus as the JSON object a status file or a pack line holds (what `Columns.add_status`
    takes)."""
    return {name: getattr(status, name) for name in _STATUS_FIELDS}


class Columns:
    """The table of `n` tasks (indices 0..n-1) being filled; `frame` makes the DataFrame."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.cols: dict[str, list[Any]] = {name: [None] * n for name in _FROM_STATUS}
        self.state: list[str | None] = [None] * n  # from the task's status; None: it has none (yet)
        self.present = bytearray(n)  # a row per readable task of tasks.jsonl
        self.params: dict[str, list[Any]] = {}
        self.metrics: dict[str, list[Any]] = {}
        self._filled = bytearray(n)  # tasks whose metrics were added (a second call replaces them)
        # metric -> (task, place in its dict) where it first shows
        self._first: dict[str, tuple[int, int]] = {}
        self._reserved: set[str] = {"task", "outputs", *FIXED_COLUMNS}

    def _col(self, table: dict[str, list[Any]], name: str) -> list[Any]:
        col = table.get(name)
        if col is None:
            col = table[name] = [None] * self.n
        return col

    # -- filling ------------------------------------------------------------------------------
    def add_params(self, index: int, params: dict[str, Any]) -> None:
        if 0 <= index < self.n:
            self.present[index] = 1
            for name, value in params.items():
                self._col(self.params, name)[index] = value

    def add_status(self, index: int, status: dict[str, Any]) -> None:
        """A task's status (a status file's or pack line's JSON object); a later one for the same task
        wins."""
        if not 0 <= index < self.n:
            return
        state = status["state"]
        self.state[index] = state.value if isinstance(state, State) else str(state)
        cols, get = self.cols, status.get
        for name in _FROM_STATUS:
            cols[name][index] = get(name)
        if get("attempts") is None:
            cols["attempts"][index] = 1  # TaskStatus's defaults
        if get("worker") is None:
            cols["worker"][index] = ""
        if not get("gpu"):
            cols["gpu"][index] = None  # an empty GPU list is no GPU
        outputs = get("outputs")
        if outputs or "outputs" in self.cols:
            self._col(self.cols, "outputs")[index] = list(outputs) if outputs else None

    def add_metrics(self, index: int, metrics: dict[str, Any] | None, *, live_step: Any = None) -> None:
        """A task's metrics (None: it has none; a later call for the task replaces them). `live_step`: they
        are the latest values of a running task's series, up to that step (its row is marked partial)."""
        if not 0 <= index < self.n:
            return
        if self._filled[index]:
            for col in self.metrics.values():
                col[index] = None
        self._filled[index] = 1
        if live_step is not None:
            self._col(self.cols, "last_step")[index] = live_step
            self._col(self.cols, "partial")[index] = True
        for place, (name, value) in enumerate((metrics or {}).items()):
            column = name if name not in self._reserved and name not in self.params else f"metric_{name}"
            known = self.metrics.get(column)
            if known is None:
                known = self._col(self.metrics, column)
                self._first[column] = (index, place)
            elif self._first[column][0] >= index and self._first[column] > (index, place):
                self._first[column] = (index, place)
            known[index] = value

    def set_error(self, index: int, error: str) -> None:
        self._col(self.cols, "error")[index] = error

    # -- reading back -------------------------------------------------------------------------
    def has_status(self, index: int) -> bool:
        return self.state[index] is not None

    def states(self, progress: Progress, cancelled: bool) -> list[str]:
        """Every task's state name, as the engine's progress reads the statuses added (`Progress.states`)."""
        written = {i: State(s) for i, s in enumerate(self.state) if s is not None}
        return [state.value for state in progress.states(self.n, written, cancelled)]

    def metric_names(self) -> list[str]:
        return sorted(self.metrics, key=lambda name: self._first.get(name, (self.n, 0)))

    def frame(self, states: list[str], param_names: list[str]) -> tuple[Any, set[str]]:
        """The DataFrame (a row per readable task, in task order) and the metric columns whose values are all
        whole numbers (to be typed as integers)."""
        import pandas as pd

        data, whole = self.data(states, param_names)
        columns = {name: _as_given(values) for name, values in data.items()}
        if all(encodable(name) for name in columns):
            return pd.DataFrame(columns), whole
        # a name UTF-8 cannot hold: an index of Python strings
        df = pd.DataFrame(dict(enumerate(columns.values())))
        df.columns = pd.Index(list(columns), dtype=object)
        return df, whole

    def data(self, states: list[str], param_names: list[str]) -> tuple[dict[str, list[Any]], set[str]]:
        """`frame`'s columns as lists, in its order, before pandas types them (`frame` and the export that
        writes them without pandas, `batchsweep.report.plainexport`, share them)."""
        rows = None if all(self.present) else [i for i in range(self.n) if self.present[i]]

        def pick(col: list[Any]) -> list[Any]:
            return col if rows is None else [col[i] for i in rows]

        data: dict[str, list[Any]] = {"task": pick(list(range(self.n)))}
        for name in [
            *[p for p in param_names if p in self.params],
            *[p for p in self.params if p not in param_names],
        ]:
            data[name] = pick(self.params[name])
        for name in param_names:
            data.setdefault(name, [None] * len(data["task"]))
        data["status"] = pick(states)
        attempts = self.cols.get("attempts") or [None] * self.n
        data["attempts"] = pick([a if a is not None else 0 for a in attempts])
        started, ended = self.cols.get("started_at"), self.cols.get("ended_at")
        data["duration_s"] = pick([round(e - s, 3) if s is not None and e is not None else None
                                   for s, e in zip(started, ended)] if started and ended else [None] * self.n)
        for name in ALWAYS[3:]:
            data[name] = pick(self.cols.get(name) or [None] * self.n)
        for name in OPTIONAL:
            col = self.cols.get(name)
            if col is not None and any(v is not None for v in col):
                data[name] = pick(col)
        whole = set()
        for name in self.metric_names():
            data[name] = pick(self.metrics[name])
            if _whole_numbers(data[name]):
                whole.add(name)
        outputs = self.cols.get("outputs")
        if outputs is not None and any(outputs):
            data["outputs"] = pick(outputs)
        return data, whole


def _as_given(values: list[Any]) -> Any:
    """A column's values for the DataFrame: as they are, but a text column holding what UTF-8 cannot encode (a
    lone surrogate from a task's JSON) stays Python strings, which pandas' own text type cannot hold."""
    if any(isinstance(v, str) and not encodable(v) for v in values):
        import pandas as pd

        return pd.Series(values, dtype=object)
    return values


INT64 = range(-(2**63), 2**63)


def _whole_numbers(values: list[Any]) -> bool:
    """Whether a metric's values are whole numbers a nullable int64 column holds (larger ones stay Python
    ints)."""
    present = [v for v in values if v is not None]
    return bool(present) and all(
        isinstance(v, int) and not isinstance(v, bool) and v in INT64 for v in present
    )
