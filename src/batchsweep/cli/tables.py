"""Tables the CLI prints (rich on a terminal, plain text otherwise): fitting columns to the width, the results
table and its views."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from batchsweep.model import OWN_PARAMS
from batchsweep.text import cell, is_missing, printable

if TYPE_CHECKING:
    import pandas as pd

    from batchsweep.runs.run import Run

# A table as its columns' values in row order (`columns_of` a DataFrame, or `plainexport.table`'s values).
Data = Mapping[str, Sequence[Any]]

def make_console(stderr: bool = False) -> Any:
    from rich.console import Console

    terminal = (sys.stderr if stderr else sys.stdout).isatty()
    return Console(stderr=stderr, width=None if terminal else 200, soft_wrap=not terminal, highlight=False)


# -- tables that fit the terminal ---------------------------------------------------------------------
TEXT_CAP = 28  # a text cell longer than this is shortened with "…" (a number never is)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or (
        hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iuf")


def _elided(value: Any) -> bool:
    return isinstance(value, str) and value in ("…", "")


def fit_table(columns: list[str], rows: list[list[Any]], *, width: int | None, title: str | None = None,
              keep: Sequence[str] = (), wrap: Sequence[str] = (),
              text_cap: int = TEXT_CAP) -> tuple[Any, list[str]]:
    """A rich table of the columns that fit in `width` (None: all of them), in order, and the names left out.

    Numbers are never cut: a column that does not fit is left out whole (the caller says so). Text cells
    longer than `text_cap` end in "…", except in `wrap` columns, which wrap onto more lines and take the
    width left over. Columns in `keep` are shown whatever it costs the others."""
    from rich import box
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    texts = [[printable(cell(v)) for v in row] for row in rows]
    columns = [printable(str(c)) for c in columns]
    # an elided row ("…" and blanks, as the dry run's) keeps a column of numbers right-aligned
    numeric = [all(_is_number(row[j]) or is_missing(row[j]) or _elided(row[j]) for row in rows)
               and not all(_elided(row[j]) for row in rows) for j in range(len(columns))]
    if width is not None:
        for row in texts:
            for j, t in enumerate(row):
                if not numeric[j] and columns[j] not in wrap and cell_len(t) > text_cap:
                    # cut by terminal cells, not characters: an emoji or a CJK character takes two
                    cut = Text(t)
                    cut.truncate(text_cap, overflow="ellipsis")
                    row[j] = cut.plain
    need = [max([cell_len(str(c)), *(cell_len(row[j]) for row in texts)]) + 2 for j, c in enumerate(columns)]
    if width is not None:
        need = [min(n, 22) if columns[j] in wrap else n for j, n in enumerate(need)]
    shown = list(range(len(columns)))
    if width is not None:
        kept = [j for j, c in enumerate(columns) if c in keep or j == 0]
        used = sum(need[j] + 1 for j in kept) - 1
        shown = []
        for j in range(len(columns)):
            if j in kept or used + need[j] + 1 <= width:
                shown.append(j)
                used += 0 if j in kept else need[j] + 1
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", show_edge=False, highlight=False)
    for j in shown:
        wraps = columns[j] in wrap
        table.add_column(str(columns[j]), justify="right" if numeric[j] else "left", no_wrap=not wraps,
                         min_width=need[j] - 2, overflow="fold" if wraps or numeric[j] else "ellipsis")
    for row in texts:
        # Text, not markup: a task's output or a param value may hold `[...]` (e.g. `[/x]`, `[bold]`).
        table.add_row(*(Text(row[j]) for j in shown))
    return table, [str(columns[j]) for j in range(len(columns)) if j not in shown]


def params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={cell(v)}" for k, v in params.items())


WIDE_ONLY = (
    "attempts",
    "duration_s",
    "exit_code",
    "started_at",
    "ended_at",
    "worker",
    "peak_rss_mib",
    "cpu_s",
    "gpu",
    "gpu_mem_mib",
    "outputs",
)


def columns_of(df: pd.DataFrame) -> dict[str, list[Any]]:
    """A DataFrame as `Data`."""
    return {c: df[c].tolist() for c in df.columns}


def result_columns(data: Data, *, params: Sequence[str], metrics: Sequence[str],
                   derived: Sequence[str] = (), wide: bool = False) -> tuple[list[str], list[str]]:
    """The results table's columns, most useful first: task, the params that vary, status, the metrics (and
    `error` when a task failed); `wide` adds the fixed and derived params, timings, worker and outputs.
    Also returns the params left out because they do not vary or are made of other params."""
    structure = [c for c in OWN_PARAMS if c in data]
    names = [p for p in params if p in data and p not in structure]
    varying = [p for p in names if p not in derived and len({cell(v) for v in data[p]}) > 1]
    quiet = [p for p in names if p not in varying]
    cols = ["task", *structure, *varying, "status", *(m for m in metrics if m in data),
            *(c for c in ("last_step", "partial") if c in data)]
    has_error = "error" in data and not all(is_missing(v) for v in data["error"])
    if wide:
        cols += [
            *quiet,
            *(c for c in WIDE_ONLY if c in data),
            *(["error"] if "error" in data else []),
        ]
        quiet = []
    elif has_error:
        cols.append("error")
    return [c for c in cols if c in data], quiet


# a table shows this many rows at most: 100,000 would take minutes to draw, and no one reads them
TABLE_ROWS = 1000


def results_view(
    data: Data,
    *,
    params: Sequence[str],
    metrics: Sequence[str],
    derived: Sequence[str] = (),
    width: int | None,
    wide: bool = False,
    columns: Sequence[str] | None = None,
    title: str | None = None,
    sort: str | None = None,
    notes: Sequence[str] = (),
) -> tuple[Any, list[str]]:
    """The results table fitted to `width` (None: every column), and the lines to print under it."""
    lines = list(notes)
    n = len(next(iter(data.values()), ()))
    if columns:
        check_columns(list(data), columns)
        cols, quiet = list(columns), list[str]()
    elif width is None:
        cols, quiet = result_columns(data, params=params, metrics=metrics, derived=derived, wide=True)
    else:
        cols, quiet = result_columns(data, params=params, metrics=metrics, derived=derived, wide=wide)
    head = [data[c][:TABLE_ROWS] for c in cols]
    head = [[_when(v) for v in values] if c in ("started_at", "ended_at") else values
            for c, values in zip(cols, head, strict=True)]
    rows = [list(row) for row in zip(*head, strict=True)]
    if n > TABLE_ROWS:
        order = f"sorted by {sort}" if sort else "in task order; --sort COLUMN for the best first"
        lines.append(
            f"the first {TABLE_ROWS:,} of {n:,} tasks shown ({order}); all of them: -o results.csv "
            "or --format csv"
        )
    table, dropped = fit_table(cols, rows, width=width, title=title, keep=[sort] if sort else ())
    if quiet:
        lines.append("not shown (the same for every task, or made of other params): "
                     + ", ".join(f"{p}={cell(data[p][0])}" if p not in derived else p for p in quiet))
    if dropped:
        lines.append(f"not shown, too wide for {width} columns: {', '.join(dropped)} "
                     "(--columns picks, --format csv has all)")
    elif width is not None and not wide and not columns and any(c in data for c in WIDE_ONLY):
        lines.append("attempts, durations, times, worker and outputs: --wide")
    return table, lines


def check_columns(names: Sequence[Any], columns: Sequence[str]) -> None:
    """`--columns`: each a column of the table (`names`)."""
    from batchsweep.errors import SweepError

    unknown = [c for c in columns if c not in names]
    if unknown:
        raise SweepError(
            f"--columns {','.join(unknown)}: no such column; columns are: {', '.join(map(str, names))}"
        )


def _when(ts: Any) -> Any:
    if is_missing(ts) or not _is_number(ts):
        return ts
    return datetime.fromtimestamp(float(ts)).strftime("%m-%d %H:%M:%S")


def print_table(data: Data, run: Run, *, wide: bool = False, columns: Sequence[str] | None = None,
                sort: str | None = None, notes: Sequence[str] = (), label: str | None = None) -> None:
    """On a terminal, the table fitted to its width; piped, every column (nothing is cut). `label` names
    what the rows are of in the title (default: the run's id). A lone surrogate in a cell is shown escaped
    (`printable`), like a control character."""
    from rich.console import Console

    from batchsweep.report.results import derived_params, metric_names

    terminal = sys.stdout.isatty()
    console = Console(highlight=False) if terminal else None
    n = len(next(iter(data.values()), ()))
    table, lines = results_view(
        data, params=list(run.record.param_names), metrics=metric_names(run, data),
        derived=derived_params(run), width=console.width if console else None, wide=wide, columns=columns,
        title=f"{label or run.id} · {n} task{'' if n == 1 else 's'}", sort=sort, notes=notes)
    if console is None:
        console = Console(
            highlight=False, width=max(Console(width=100_000).measure(table).maximum, 80), soft_wrap=True
        )
    console.print(table)
    for line in lines:
        console.print(line, markup=False, style="dim" if terminal else None)
