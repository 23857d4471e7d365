"""A results table written out: CSV (made a column at a time, the bytes pandas writes), JSON or Parquet, its
times as dates, its text as UTF-8 holds it and safe to open in a spreadsheet."""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchsweep.text import is_missing, utf8

if TYPE_CHECKING:
    import pandas as pd


def to_parquet_bytes(df: pd.DataFrame, *, exact: bool = False) -> bytes:
    """The table as Parquet. A column Parquet cannot type as it is (mixed values: `choice(1, "a")`, a list
    param beside a scalar one, a whole number past int64, text UTF-8 cannot hold) is written as text, each
    value as JSON writes it (a string as itself); `exact`: raise instead (the results cache must give back
    what it got)."""
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
                                   json.dumps(v, default=str, ensure_ascii=False)
                                   for v in out[name].tolist()], out.index)
    return out


def pd_object(values: list[Any], index: Any = None) -> Any:
    """A column of Python objects; `index`: the table's (a sorted table's is not 0..n-1, and a column is
    placed by it)."""
    import pandas as pd

    return pd.Series(values, dtype=object, index=index)


def utf8_cell(value: Any) -> Any:
    """A cell as UTF-8 can hold it: text, and the texts inside a list."""
    if isinstance(value, str):
        return utf8(value)
    if isinstance(value, list):
        return [utf8_cell(v) for v in value]
    return value


def utf8_table(df: pd.DataFrame) -> pd.DataFrame:
    """The table with its text (column names, text cells, the texts inside list cells: `outputs`) as UTF-8 can
    hold it (`text.utf8`): what a UTF-8 file format gets."""
    out = df.copy(deep=False)  # a column fixed below is a new array: the others need no copy
    if any(isinstance(c, str) and utf8(c) != c for c in df.columns):
        import pandas as pd

        out.columns = pd.Index([utf8(c) if isinstance(c, str) else c for c in df.columns])
    for name in out.columns:
        if out[name].dtype == object:
            values = out[name].tolist()
            fixed = [utf8_cell(v) for v in values]
            if fixed != values:
                out[name] = pd_object(fixed, out.index)
    return out


def export(df: pd.DataFrame, fmt: str, path: str | os.PathLike[str] | None) -> str | None:
    """Write the table as csv/json/parquet (to path) or return it as text. `table` is the CLI's business."""
    df = utf8_table(_times_as_dates(df, fmt))
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


def _times_as_dates(df: pd.DataFrame, fmt: str) -> pd.DataFrame:
    """The table with its epoch-second columns as times a reader of the file sees as times: ISO-8601 text with
    its time zone (UTC, `2026-12-07T04:10:00.123456+00:00`) for CSV, datetime columns in UTC for Parquet,
    whole milliseconds since the epoch for JSON (what pandas' `to_json` has always written for a datetime; its
    default turns to ISO text in pandas 4, so the numbers are made here)."""

    times = [c for c in TIME_COLUMNS if c in df.columns and df[c].dtype.kind in "iuf"]
    if not times:
        return df
    out = df.copy(deep=False)  # the columns replaced below are new arrays: the others need no copy
    for name in times:
        when = _utc_times(out[name])
        out[name] = _iso_texts(when) if fmt == "csv" else _epoch_ms(when) if fmt == "json" else when
    return out


def epoch_micros(seconds: Any) -> int | None:
    """Epoch seconds as whole microseconds, the most an epoch float of today holds (no `.002000093` of float
    noise): the whole seconds and the fraction rounded to the nanosecond apart, then to the microsecond, half
    to even. ValueError for an infinite time."""
    if seconds is None or seconds != seconds:
        return None
    if isinstance(seconds, int):
        return seconds * 1_000_000
    value = float(seconds)
    if math.isinf(value):
        raise ValueError("an infinite time")
    whole = math.trunc(value)
    ns = whole * 1_000_000_000 + int(round(value - whole, 9) * 1e9)
    us, rest = divmod(ns, 1000)
    return us + 1 if rest > 500 or (rest == 500 and us % 2) else us


def _utc_times(seconds: pd.Series) -> pd.Series:
    """Epoch seconds as UTC datetimes rounded by `epoch_micros`, so the DataFrame and the plain export agree
    in every pandas (2.0's `to_datetime` of a float loses its last microsecond)."""
    import numpy as np
    import pandas as pd

    micros = [epoch_micros(v) for v in seconds.tolist()]
    missing = np.array([m is None for m in micros], dtype=bool)
    whole = np.array([0 if m is None else m for m in micros], dtype="int64")
    when = pd.Series(pd.to_datetime(whole, unit="us", utc=True), index=seconds.index).where(~missing)
    return when.astype("datetime64[ns, UTC]")  # pandas 3 would keep microseconds: Parquet's type stays ns


def _epoch_ms(when: pd.Series) -> Any:
    """UTC times as whole milliseconds since the epoch, rounded down (a time before 1970 too); missing times
    stay missing."""
    import numpy as np
    import pandas as pd

    us = when.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    missing = np.isnat(us)
    return pd.arrays.IntegerArray(np.where(missing, 0, us.astype("int64") // 1000), missing)


def _iso_texts(when: pd.Series) -> Any:
    """UTC times as `Timestamp.isoformat()` writes them (no fraction when the microseconds are 0), made by
    numpy 10,000 at a time rather than a Timestamp per value; missing times stay missing."""
    import numpy as np
    import pandas as pd

    every = when.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    out: list[str | None] = []
    for start in range(0, len(every), 10_000):
        us = every[start:start + 10_000]
        texts = np.datetime_as_string(us, unit="us")  # YYYY-MM-DDTHH:MM:SS.ffffff
        texts = np.char.add(
            np.where(us.astype("int64") % 1_000_000 == 0, texts.astype("<U19"), texts), "+00:00"
        )
        values = texts.astype(object)
        values[np.isnat(us)] = None
        out += values.tolist()
    return pd.array(out, dtype="string")


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
    """`df.to_csv(index=False)` in parts, the same bytes, made a column at a time and 10,000 rows at a time
    when every column is of a type pandas writes as Python prints it (float64 as `repr`, ints, bools, nullable
    ints and booleans, text): about 60% of the CPU for 100,000 rows. Any other table (an object column, one
    column, no rows) is pandas' to write, in one part."""
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
    """Texts as the csv module writes them in a row of several (quoted when they hold a comma, a quote or a
    line break): the few that need it are written by the csv module itself."""
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
