"""`batchsweep results --format csv|json` without pandas: the run's columns (`Columns.data`) typed as pandas
would type them (`kind`), then written with the bytes `export.export` writes for the same table. pandas and
pyarrow alone take ~134 MB on import, more than the rest of a 100,000-task export.

A table this module cannot vouch for (a whole number past int64, a text column holding a lone surrogate, a
value of a type JSON does not make, no rows, a column chosen twice) raises `Unsupported`: the caller writes it
through the DataFrame instead."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from batchsweep.report.export import (
    _FORMULA_START,
    TIME_COLUMNS,
    _csv_quoted,
    _inert,
    epoch_micros,
    utf8_cell,
)
from batchsweep.text import encodable, utf8

if TYPE_CHECKING:
    from batchsweep.runs.run import Run


class Unsupported(Exception):
    """The table holds what only the DataFrame path is known to write right."""


# What pandas makes of a column given as a Python list, and what `results._typed` makes of it after.
INT, FLOAT, BOOL, NULLABLE_INT, TEXT, OBJECT = "int64", "float64", "bool", "Int64", "str", "object"
_INT64 = range(-(2**63), 2**63)
_NONE = type(None)


def kind(values: list[Any]) -> str:
    """The dtype pandas gives a column made from `values` (`pd.DataFrame({name: values})`)."""
    types = set(map(type, values))
    if types <= {_NONE}:
        return OBJECT
    if bool in types:
        return BOOL if types == {bool} else OBJECT
    if types <= {int, float, _NONE}:
        if int in types and not all(v in _INT64 for v in values if type(v) is int):
            raise Unsupported("a whole number past int64")
        return INT if types == {int} else FLOAT
    if types <= {str, float, _NONE}:
        if float in types and any(v == v for v in values if type(v) is float):
            return OBJECT
        if any(not encodable(v) for v in values if type(v) is str):
            return OBJECT  # `columns._as_given`: pandas' own text type cannot hold it
        return TEXT
    if not types <= {str, float, int, bool, list, dict, _NONE}:
        raise Unsupported(f"a value of type {sorted(t.__name__ for t in types)}")
    return OBJECT


Column = tuple[str, list[Any]]  # (kind, values)
Check = Callable[[Sequence[str], Sequence[str]], None]  # (the table's names, the columns asked for)


Sort = tuple[str, bool | None, Callable[[str], None]]  # --sort KEY, --asc/--desc, where its note goes


def table(
    run: Run, columns: list[str] | None = None, check: Check | None = None, sort: Sort | None = None
) -> tuple[dict[str, Column], list[Any] | None]:
    """The run's results table as `run.results(refresh=True)` types it (`results._typed`), sorted as
    `results.sort_best_first` sorts it when asked, with only `columns` when given (`check` is handed the
    table's names and them first); and when it is final (what the DataFrame path would cache) its succeeded
    tasks' durations, else None."""
    from batchsweep.report.results import fill, metric_names

    filled = fill(run)
    data, whole = filled.table.data(filled.states, list(run.record.param_names))
    if not data["task"]:
        raise Unsupported("no rows")
    if columns is not None and len(set(columns)) != len(columns):
        raise Unsupported("a column chosen twice")
    typed: dict[str, Column] = {}
    nullable = {"exit_code", *(m for m in metric_names(run, data) if m in whole)}
    for name, values in data.items():
        if name == "attempts":
            typed[name] = (INT, values)
        elif name == "partial":
            typed[name] = (BOOL, [bool(v) if v is not None else False for v in values])
        elif name == "outputs":
            typed[name] = (OBJECT, [list(v) if isinstance(v, (list, tuple)) else [] for v in values])
        elif name in nullable:
            if not set(map(type, values)) <= {int, _NONE}:
                raise Unsupported(f"{name}: not whole numbers")
            typed[name] = (NULLABLE_INT, values)
        else:
            typed[name] = (kind(values), values)
    durations = None
    if filled.lasting:
        durations = [d for s, d in zip(data["status"], data["duration_s"]) if s == "succeeded"]
    if sort is not None:
        typed = _sorted(run, typed, *sort)
    if columns is not None:
        if check is not None:
            check(list(typed), columns)
        typed = {name: typed[name] for name in columns}
    return typed, durations


def _sorted(run: Run, typed: dict[str, Column], key: str, ascending: bool | None,
            note: Callable[[str], None]) -> dict[str, Column]:
    """`results.sort_best_first` of the table: a stable sort, missing values last (pandas' `sort_values`);
    a column of mixed or nested values is the DataFrame's to sort."""
    from batchsweep.report.results import metric_names, sort_order

    column, up, line = sort_order(list(typed), key, ascending=ascending, metrics=metric_names(run, typed),
                                  values=lambda c: typed[c][1])
    k, values = typed[column]
    if k not in (INT, FLOAT, BOOL, NULLABLE_INT, TEXT):
        raise Unsupported(f"--sort {column}: a column of mixed values")
    present = [i for i, v in enumerate(values) if not _missing(v)]
    order = sorted(present, key=values.__getitem__, reverse=not up)
    if len(order) < len(values):
        order += [i for i, v in enumerate(values) if _missing(v)]
    note(line)
    return {name: (k, [vs[i] for i in order]) for name, (k, vs) in typed.items()}


def export(run: Run, fmt: str, path: str | os.PathLike[str] | None, columns: list[str] | None = None,
           check: Check | None = None, sort: Sort | None = None) -> str | None:
    """`export.export(run.results(refresh=True)[columns], fmt, path)` for csv and json. `Unsupported` when
    the table is one `kind` cannot vouch for (a file may have been begun: the DataFrame path writes it
    anew)."""
    typed = _times(read(run, columns, check, sort), fmt)
    # a TEXT column holds no lone surrogate (`kind`)
    typed = {utf8(name): (k, [utf8_cell(v) for v in values] if k == OBJECT else values)
             for name, (k, values) in typed.items()}
    if fmt == "csv":
        if "outputs" in typed:
            typed["outputs"] = (TEXT, [";".join(map(str, v)) if isinstance(v, list) else ""
                                       for v in typed["outputs"][1]])
        typed = {_inert(name): (k, _inert_cells(values) if k in (TEXT, OBJECT) else values)
                 for name, (k, values) in typed.items()}
        parts = _csv_parts(typed)
    else:
        parts = _json_parts(typed)
    if path is not None:
        with open(path, "w") as out:
            out.writelines(parts)
        text = None
    else:
        text = "".join(parts)
    return text


def read(run: Run, columns: list[str] | None = None, check: Check | None = None,
         sort: Sort | None = None) -> dict[str, Column]:
    """`table` as `run.results()` reads it: a damaged cache is warned of, and a final run's durations are
    kept for estimates (`results.write_sweep_stats`)."""
    from batchsweep.report.results import write_sweep_stats

    _note_damaged_cache(run)
    typed, durations = table(run, columns, check, sort)
    if durations is not None:
        write_sweep_stats(run, durations)
    return typed


def _note_damaged_cache(run: Run) -> None:
    """The warning `results.gather` gives for a damaged results.parquet (it is not read here, but a user
    should know it is there): one that does not begin and end with Parquet's magic bytes."""
    try:
        with open(run.store.local_path(run.store.results_cache_key(run.id)), "rb") as f:
            head = f.read(4)
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 4, 0))
            tail = f.read(4)
    except FileNotFoundError:
        return
    except OSError:
        head = tail = b""
    if head != b"PAR1" or tail != b"PAR1":
        run.store.warn(f"run {run.id}: the cached results.parquet is damaged; rebuilt from the task files")


def _inert_cells(values: list[Any]) -> list[Any]:
    """`export.spreadsheet_safe` of a column."""
    start = _FORMULA_START
    return ["'" + v if v.__class__ is str and v.startswith(start) else v for v in values]




# -- times ------------------------------------------------------------------------------------------------
_EPOCH = datetime(1970, 1, 1)


def _times(typed: dict[str, Column], fmt: str) -> dict[str, Column]:
    """`export._times_as_dates`: epoch seconds as ISO text (CSV) or whole milliseconds (JSON)."""
    out = dict(typed)
    for name in TIME_COLUMNS:
        if name not in typed or typed[name][0] not in (INT, FLOAT, NULLABLE_INT):
            continue
        micros = [_micros(v) for v in typed[name][1]]
        if fmt == "csv":
            out[name] = (TEXT, _isos(micros))
        else:
            out[name] = (NULLABLE_INT, [None if us is None else us // 1000 for us in micros])
    return out


def _micros(seconds: Any) -> int | None:
    try:
        return epoch_micros(seconds)
    except ValueError:
        raise Unsupported("an infinite time") from None


def _isos(micros: list[int | None]) -> list[str | None]:
    """`Timestamp.isoformat()` of UTC times: no fraction when it is whole seconds."""
    epoch, step = _EPOCH, timedelta(microseconds=1)
    try:
        return [None if us is None else (epoch + us * step).isoformat() + "+00:00" for us in micros]
    except OverflowError:
        raise Unsupported("a time past year 9999") from None


# -- CSV --------------------------------------------------------------------------------------------------
def _missing(v: Any) -> bool:
    return v is None or (type(v) is float and v != v)


def _cells(k: str, values: list[Any]) -> list[Any]:
    """The column's cells as pandas hands them to the csv module (`to_csv`)."""
    if k == INT:
        return list(map(str, values))
    if k == FLOAT:  # NaN is the value unequal to itself
        return [repr(float(v)) if v is not None and v == v else "" for v in values]
    if k == BOOL:
        return list(map(str, values))
    if k == TEXT:
        return [v if v.__class__ is str else "" for v in values]  # the others are None or NaN
    if k == NULLABLE_INT:
        return ["" if v is None else str(v) for v in values]
    return ["" if _missing(v) else v for v in values]  # the csv module writes str(v)


def _csv_parts(typed: dict[str, Column]) -> Iterator[str]:
    """`export.csv_parts`: a column and 10,000 rows at a time when every column is of the kinds it writes so,
    as pandas' `to_csv` (the csv module, a row at a time) otherwise."""
    names = list(typed)
    rows = len(next(iter(typed.values()))[1])
    fast = len(names) >= 2 and all(k != OBJECT or all(v is None or isinstance(v, str) for v in values)
                                   for k, values in typed.values())
    if fast:
        yield ",".join(_csv_quoted(names)) + "\n"
        for start in range(0, rows, 10_000):
            made = []
            for k, values in typed.values():
                cells = _cells(TEXT if k == OBJECT else k, values[start:start + 10_000])
                made.append(_csv_quoted(cells) if k in (TEXT, OBJECT) else cells)
            yield "\n".join(map(",".join, zip(*made))) + "\n"
        return
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    for start in range(0, rows, 10_000):
        writer.writerows(zip(*(_cells(k, values[start:start + 10_000]) for k, values in typed.values())))
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()


# -- JSON -------------------------------------------------------------------------------------------------
def _json_text(text: str) -> str:
    """A string as pandas' ujson writes it with `ensure_ascii`: `/` escaped, DEL as it is."""
    if "\x7f" in text:  # json.dumps escapes it: the parts around it are escaped apart
        return '"' + "\x7f".join(_json_text(part)[1:-1] for part in text.split("\x7f")) + '"'
    return json.dumps(text).replace("/", "\\/")


def _number(value: float) -> str:
    """A finite float as pandas' ujson writes it (`double_precision=10`): at most 10 decimals, trailing zeros
    dropped but one; `%.10g` at or past 1e16 and below 1e-15."""
    neg = value < 0
    value = -value if neg else value
    if value > 1e16 - 1 or (value != 0.0 and value < 1e-15):
        return "%.10g" % (-value if neg else value)
    whole = int(value)
    tmp = (value - whole) * 1e10
    frac = int(tmp)
    diff = tmp - frac
    if diff > 0.5 or (diff == 0.5 and (frac == 0 or frac & 1)):
        frac += 1
    if frac >= 10_000_000_000:
        frac, whole = 0, whole + 1
    if frac:
        digits = 10
        while not frac % 10:
            digits, frac = digits - 1, frac // 10
        text = f"{whole}.{str(frac).rjust(digits, '0')}"
    else:
        text = f"{whole}.0"
    return "-" + text if neg else text


def _value(value: Any, level: int) -> str:
    """One value of an object column (or inside one) at its indent `level`, as ujson writes it."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return _number(value) if math.isfinite(value) else "null"
    if type(value) is str:
        return _json_text(value)
    pad = " " * (level + 1)
    if type(value) is list:
        items = [pad + _value(v, level + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + " " * level + "]"
    if type(value) is dict and all(type(k) is str for k in value):
        items = [pad + _json_text(k) + ":" + _value(v, level + 1) for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * level + "}"
    raise Unsupported(f"a {type(value).__name__} in a cell")


def _json_cells(k: str, values: list[Any]) -> list[str]:
    if k in (INT, NULLABLE_INT):
        return ["null" if v is None else str(v) for v in values]
    if k == FLOAT:
        return ["null" if v is None or not math.isfinite(v) else _number(float(v)) for v in values]
    if k == BOOL:
        return ["true" if v else "false" for v in values]
    if k == TEXT:
        return ["null" if _missing(v) else _json_text(v) for v in values]
    return [_value(v, 2) for v in values]


def _json_parts(typed: dict[str, Column]) -> Iterator[str]:
    """`df.to_json(orient="records", indent=1)` 10,000 rows at a time."""
    keys = ["  " + _json_text(name) + ":" for name in typed]
    rows = len(next(iter(typed.values()))[1])
    for start in range(0, rows, 10_000):
        made = [_json_cells(k, values[start:start + 10_000]) for k, values in typed.values()]
        records = (" {\n" + ",\n".join(map(str.__add__, keys, cells)) + "\n }" for cells in zip(*made))
        yield ("[\n" if start == 0 else ",\n") + ",\n".join(records)
    yield "\n]"
