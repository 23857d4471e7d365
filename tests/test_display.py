"""What `results` and `status` print: tables that fit the terminal, numbers never cut, best-first sorting."""

from __future__ import annotations

import datetime
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import write_spec
from rich.console import Console
from test_report import METRICS, backtest_frame

import batchsweep
from batchsweep import cli
from batchsweep.cli.tables import columns_of, fit_table, results_view
from batchsweep.errors import SweepError
from batchsweep.report.results import sort_best_first
from batchsweep.text import cell

SCRIPTS = Path(__file__).parent / "scripts"
PARAMS = ["symbol", "fast", "slow", "fee_bps", "data"]
WIDE_METRICS = [*METRICS, "exposure", "buy_hold_return", "calmar_ratio"]


def demo_frame() -> pd.DataFrame:
    """The backtest results as gathered: long floats, a fixed and a derived param, outputs, an int metric
    missing on the failed rows."""
    df = backtest_frame()
    rng = np.random.default_rng(3)
    df["fee_bps"] = 10
    df["data"] = df["symbol"] + ".csv"
    for m in ("exposure", "buy_hold_return", "calmar_ratio"):
        df[m] = rng.normal(0, 1, len(df)) * 1.234567891
    df["n_trades"] = df["n_trades"].astype("Int64")
    df["outputs"] = [["equity.csv", "trades.csv"]] * len(df)
    return df


def render(table, lines, width: int) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, highlight=False)
    console.print(table)
    for line in lines:
        console.print(line, markup=False)
    return out.getvalue()


def header_and_rows(text: str) -> tuple[list[str], list[list[str]]]:
    lines = text.splitlines()
    rule = next(i for i, line in enumerate(lines) if set(line.strip()) == {"─"})
    header = lines[rule - 1].split()
    rows = [line.split() for line in lines[rule + 1:] if re.match(r"^\s+\d+\s", line)]
    return header, rows


@pytest.mark.parametrize("width", [80, 100, 120])
def test_results_fit_the_terminal_and_no_number_is_cut(width: int) -> None:
    df = demo_frame()
    table, lines = results_view(columns_of(df), params=PARAMS, metrics=WIDE_METRICS, derived=["data"],
                                width=width, title="run · 30 tasks", sort="sharpe")
    text = render(table, lines, width)
    assert max(len(line) for line in text.splitlines()) <= width
    header, rows = header_and_rows(text)
    assert header[:6] == ["task", "symbol", "fast", "slow", "status", "total_return"]
    assert "sharpe" in header and "…" not in text.split("not shown")[0]
    assert len(rows) == len(df)
    for row in rows:  # every cell of a succeeded row is its value to 4 significant digits, whole
        shown, src = dict(zip(header, row, strict=False)), df.iloc[int(row[0])]
        if shown["status"] == "succeeded":
            assert [shown[c] for c in header if c in WIDE_METRICS] == [
                cell(src[c]) for c in header if c in WIDE_METRICS
            ]
    hidden = [m for m in WIDE_METRICS if m not in header]
    if hidden:  # a column left out is said, never cut
        assert f"not shown, too wide for {width} columns: " in " ".join(text.split())
        assert all(m in text for m in hidden)
    assert "fee_bps=10" in text and "data" in text  # the fixed and derived params are named, not columns
    assert "fee_bps" not in header and "data" not in header and "worker" not in header


def test_wide_shows_timings_worker_and_outputs_joined() -> None:
    table, _ = results_view(
        columns_of(demo_frame()), params=PARAMS, metrics=WIDE_METRICS, derived=["data"], width=400, wide=True
    )
    header, rows = header_and_rows(render(table, [], 400))
    for col in ("fee_bps", "data", "attempts", "duration_s", "worker", "outputs", "started_at"):
        assert col in header
    assert rows[0][-1] == "equity.csv;trades.csv"


def test_piped_output_keeps_every_column() -> None:
    df = demo_frame()
    table, lines = results_view(columns_of(df), params=PARAMS, metrics=WIDE_METRICS, derived=["data"],
                                width=None)
    header, _ = header_and_rows(render(table, lines, 1000))
    assert set(header) == set(df.columns) and not lines


def test_a_huge_table_shows_its_first_rows_and_says_where_all_of_them_are() -> None:
    from batchsweep.cli.tables import TABLE_ROWS

    df = pd.DataFrame({"task": range(TABLE_ROWS + 5), "lr": 0.1, "loss": np.linspace(1, 2, TABLE_ROWS + 5)})
    table, lines = results_view(columns_of(df), params=["lr"], metrics=["loss"], width=None)
    assert table.row_count == TABLE_ROWS
    assert (
        f"the first {TABLE_ROWS:,} of {TABLE_ROWS + 5:,} tasks shown" in lines[-1]
        and "-o results.csv" in lines[-1]
    )


def test_columns_picks_columns_in_order() -> None:
    table, _ = results_view(
        columns_of(demo_frame()), params=PARAMS, metrics=METRICS, width=80, columns=["sharpe", "task"]
    )
    assert header_and_rows(render(table, [], 80))[0] == ["sharpe", "task"]
    with pytest.raises(SweepError, match="--columns sharp: no such column"):
        results_view(columns_of(demo_frame()), params=PARAMS, metrics=METRICS, width=80, columns=["sharp"])


def test_numbers_have_four_significant_digits_and_ints_stay_whole() -> None:
    assert [
        cell(v) for v in (1.23456789, -0.000123456, 12.0, 123456.7, 7, np.int64(42), np.float64(0.5))
    ] == ["1.235", "-0.0001235", "12", "123457", "7", "42", "0.5"]
    assert [cell(v) for v in (None, float("nan"), pd.NA, ["a.pkl", "b.pkl"], np.array(["x", "y"]))] == \
        ["", "", "", "a.pkl;b.pkl", "x;y"]


def test_a_text_cell_is_shortened_but_a_wide_number_column_is_dropped() -> None:
    rows = [[1, "x" * 60, 1.234567e-7, 3]]
    table, dropped = fit_table(["task", "name", "tiny", "n"], rows, width=42)
    text = render(table, [], 42)
    assert "x" * 27 + "…" in text and dropped == ["tiny"]


def test_a_shortened_cell_of_wide_characters_is_as_wide_as_one_of_ascii() -> None:
    from rich.cells import cell_len

    values = ["a" * 40, "a🚀" + "b" * 40, "漢字" * 20, "🚀x" * 20]
    table, _ = fit_table(["task", "tag", "n"], [[i, v, 1] for i, v in enumerate(values)], width=80)
    lines = render(table, [], 80).splitlines()[2:]
    assert {cell_len(line.rstrip()) for line in lines} == {cell_len(lines[0].rstrip())}
    assert all(line.rstrip().endswith("…   1") for line in lines)


def test_status_prints_failures_within_the_terminal(tmp_path: Path, monkeypatch) -> None:
    from batchsweep.cli import statusview

    spec = write_spec(tmp_path, f"""
        name: fits
        script: {SCRIPTS / 'writes_metrics.py'}
        params: {{grid: {{a: [1, 2, 3]}}, fixed: {{fail_on: 2, b: 0.333333333}}}}
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    out = io.StringIO()
    monkeypatch.setattr(
        statusview,
        "make_console",
        lambda stderr=False: Console(
            file=out, width=80, force_terminal=True, color_system=None, highlight=False
        ),
    )
    statusview.print_status(run)
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert re.search(r"^\s+1\s+failed\s+3\s+1\s+exit code 3", text, re.M), text
    assert "b=0.3333" in text


def test_the_dry_run_status_and_results_show_a_param_alike(tmp_path: Path, capsys) -> None:
    (tmp_path / "a.py").write_text(
        "import argparse, json, sys\np = argparse.ArgumentParser(); p.add_argument('--a', type=float)\n"
        "a = p.parse_args().a\nif a == 1: sys.exit(3)\njson.dump({'y': a}, open('metrics.json', 'w'))\n")
    spec = write_spec(tmp_path, """
        name: alike
        script: a.py
        params: {grid: {a: [1.0, 2.5]}}
    """)
    store = str(tmp_path / "store")
    assert cli.main(["run", str(spec), "--dry-run", "--store", store]) == 0
    plan = header_and_rows(capsys.readouterr().out)
    assert cli.main(["run", str(spec), "--store", store]) == 1
    capsys.readouterr()
    assert cli.main(["results", "--store", store, "--columns", "task,a"]) == 0
    results = header_and_rows(capsys.readouterr().out)
    assert cli.main(["status", "--store", store]) == 0
    failed = re.search(r"^\s+0\s+failed\s.*\s(a=\S+)", capsys.readouterr().out, re.M)
    assert plan[1][0][:2] == results[1][0] == ["0", "1"] and failed and failed.group(1) == "a=1"


def test_a_one_task_sweep_is_one_task_not_one_tasks(tmp_path: Path, capsys) -> None:
    spec = write_spec(tmp_path, f"""
        name: one
        script: {SCRIPTS / 'writes_metrics.py'}
        params: {{grid: {{a: [1]}}}}
    """)
    store = str(tmp_path / "store")
    assert cli.main(["run", str(spec), "--dry-run", "--store", store]) == 0
    assert re.search(r"^1 task · backend ", capsys.readouterr().out, re.M)
    assert cli.main(["run", str(spec), "--store", store]) == 0
    capsys.readouterr()
    assert cli.main(["results", "--store", store]) == 0
    assert re.search(r"^one-\S+ · 1 task$", capsys.readouterr().out, re.M)


# -- integers and outputs in the gathered table -------------------------------------------------------------
def test_integer_metrics_stay_integers_when_a_task_failed(tmp_path: Path) -> None:
    (tmp_path / "ints.py").write_text(
        "import argparse, json, sys\np = argparse.ArgumentParser(); p.add_argument('--a', type=int)\n"
        "a = p.parse_args().a\nif a == 2: sys.exit(3)\nopen('out.txt', 'w').write('x')\n"
        "json.dump({'n_trades': a * 10, 'ratio': a / 3}, open('metrics.json', 'w'))\n")
    spec = write_spec(tmp_path, """
        name: ints
        script: ints.py
        params: {grid: {a: [1, 2, 3]}}
        outputs: ["*.txt"]
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    for df in (run.results(), run.results()):  # gathered, then from the parquet cache
        assert str(df["n_trades"].dtype) == "Int64" and str(df["ratio"].dtype) == "float64"
        assert df["n_trades"].tolist()[0] == 10 and df["n_trades"].isna().tolist() == [False, True, False]
        assert df["outputs"].tolist() == [["out.txt"], [], ["out.txt"]]
    out = tmp_path / "r.csv"
    assert cli.main(["results", run.id, "-o", str(out), "--store", str(tmp_path / "store")]) == 0
    assert out.read_text().splitlines()[1].endswith(",10,0.3333333333333333,out.txt")


# -- sorting best first -------------------------------------------------------------------------------------
def frame() -> pd.DataFrame:
    return pd.DataFrame({"task": [0, 1, 2, 3], "lr": [0.1, 0.01, 0.001, 0.0001],
                         "val_loss": [0.5, None, 0.2, 0.9], "sharpe": [1.0, 2.0, None, -1.0],
                         "max_drawdown": [-0.3, -0.1, -0.5, None], "fit_time": [3.0, 1.0, 2.0, 4.0],
                         "widgets": [5, 7, 6, None]})


@pytest.mark.parametrize(("key", "order", "direction"), [
    ("val_loss", [2, 0, 3, 1], "ascending"),
    ("sharpe", [1, 0, 3, 2], "descending"),
    ("max_drawdown", [1, 0, 2, 3], "descending"),  # negative fractions: closest to 0 first
    ("fit_time", [1, 2, 0, 3], "ascending"),
    ("widgets", [1, 2, 0, 3], "descending"),  # a metric whose name does not say
    ("lr", [3, 2, 1, 0], "ascending"),  # not a metric
    ("-val_loss", [3, 0, 2, 1], "descending"),
    ("+sharpe", [3, 0, 1, 2], "ascending"),
])
def test_sort_is_best_first_by_name_and_missing_values_go_last(
    key: str, order: list[int], direction: str
) -> None:
    df, how = sort_best_first(
        frame(), key, metrics=["val_loss", "sharpe", "max_drawdown", "fit_time", "widgets"]
    )
    assert df["task"].tolist() == order
    assert how.startswith(f"sorted by {key.lstrip('+-')}, {direction}")


def test_asc_and_desc_override_the_name() -> None:
    assert sort_best_first(frame(), "val_loss", ascending=False)[0]["task"].tolist() == [3, 0, 2, 1]
    assert sort_best_first(frame(), "sharpe", ascending=True)[0]["task"].tolist() == [3, 0, 1, 2]


def test_sort_of_an_unknown_column_lists_the_columns() -> None:
    with pytest.raises(SweepError, match="--sort sharp: no such column; columns are: task, lr"):
        sort_best_first(frame(), "sharp")


def test_minus_column_is_a_value_on_the_command_line(tmp_path: Path, capsys) -> None:
    spec = write_spec(tmp_path, f"""
        name: sorted
        script: {SCRIPTS / 'writes_metrics.py'}
        params: {{grid: {{a: [1, 3, 2]}}}}
    """)
    store = str(tmp_path / "store")
    batchsweep.run(spec, store=store, progress=False)
    capsys.readouterr()
    assert cli.main(["results", "--sort", "-a_seen", "--format", "csv", "--store", store]) == 0
    out = capsys.readouterr()
    assert pd.read_csv(io.StringIO(out.out))["a_seen"].tolist() == [3, 2, 1]
    assert "sorted by a_seen, descending: from the - prefix" in out.err
    assert cli.main(["results", "--sort", "a_seen", "--asc", "--store", store]) == 0
    out = capsys.readouterr().out
    assert [int(r[0]) for r in header_and_rows(out)[1]] == [0, 2, 1]  # task column, a_seen ascending
    assert "sorted by a_seen, ascending: as asked" in out


def test_columns_apply_to_csv_and_a_wrong_name_is_one_error_line(tmp_path: Path, capsys) -> None:
    spec = write_spec(tmp_path, f"""
        name: cols
        script: {SCRIPTS / 'writes_metrics.py'}
        params: {{grid: {{a: [1, 2]}}}}
    """)
    store = str(tmp_path / "store")
    batchsweep.run(spec, store=store, progress=False)
    capsys.readouterr()
    assert cli.main(["results", "--columns", "a_seen,task", "--format", "csv", "--store", store]) == 0
    assert capsys.readouterr().out.splitlines() == ["a_seen,task", "1,0", "2,1"]
    assert cli.main(["results", "--columns", "task,a_sen", "--format", "csv", "--store", store]) == 2
    assert "--columns a_sen: no such column; columns are: task, a," in capsys.readouterr().err


def test_runs_keep_every_run_id_whole_at_80_columns(tmp_path: Path, monkeypatch) -> None:
    from batchsweep.cli import display
    from batchsweep.runs.catalog import list_runs

    spec = write_spec(tmp_path, f"""
        name: a-rather-long-sweep-name
        script: {SCRIPTS / 'writes_metrics.py'}
        params: {{grid: {{a: [1]}}}}
    """)
    store = str(tmp_path / "store")
    run = batchsweep.run(spec, store=store, progress=False)
    out = io.StringIO()
    monkeypatch.setattr(
        display,
        "make_console",
        lambda stderr=False: Console(
            file=out, width=80, force_terminal=True, color_system=None, highlight=False
        ),
    )
    display.print_runs(list_runs(store=store), store=store)
    text = out.getvalue()
    assert run.id in text and "1 succeeded" in text and max(map(len, text.splitlines())) <= 80


def test_cells_with_brackets_are_text_not_markup() -> None:
    from rich.console import Console

    from batchsweep.cli.tables import fit_table

    table, _ = fit_table(["task", "error"], [[3, "lost: [task 3] halfway [bold]x[/bold] [/oops]"]], width=120,
                         wrap=("error",))
    console = Console(width=120, record=True)
    console.print(table)
    assert "[task 3] halfway [bold]x[/bold] [/oops]" in console.export_text()


def test_csv_is_what_pandas_writes_for_every_column_type(tmp_path: Path) -> None:
    """`results -o x.csv` writes the columns itself when it can: the same bytes as `DataFrame.to_csv`, for
    floats Python and numpy print differently from a naive format, text to quote, missing values, and the
    tables it leaves to pandas."""
    from batchsweep.report.results import csv_text, export

    rng = np.random.default_rng(7)
    floats = [
        0.1,
        1e-05,
        1e16,
        1.5e-07,
        123456789012345680.0,
        -0.0,
        2.5,
        1796038797.3207555,
        np.inf,
        -np.inf,
        np.nan,
        1e300,
        5e-324,
        *rng.standard_normal(200) * 10.0 ** rng.integers(-30, 30, 200),
        *np.frombuffer(rng.bytes(8 * 300), dtype=np.float64),
    ]
    n = len(floats)
    texts = ["plain", 'say "hi"', "a,b", "two\nlines", "cr\rhere", "", None, " lead", "ünï", "tab\there"]
    df = pd.DataFrame({
        "task": np.arange(n), "x": np.array(floats, dtype=np.float64),
        "flag": [i % 2 == 0 for i in range(n)],
        "exit_code": pd.array([None if i % 3 == 0 else i - 5 for i in range(n)], dtype="Int64"),
        "ok": pd.array([None if i % 4 == 0 else i % 2 == 0 for i in range(n)], dtype="boolean"),
        "error": pd.array([texts[i % len(texts)] for i in range(n)], dtype="str"),
        "worker": pd.array([f"w{i}" for i in range(n)], dtype="string"),
        'odd, "name"': np.ones(n),
    })
    # but a bare CR is quoted, as pandas does not (a reader breaks the row)
    def pandas(table: pd.DataFrame) -> str:
        return table.to_csv(index=False).replace("cr\rhere", '"cr\rhere"')

    assert csv_text(df) == pandas(df)
    big = pd.concat([df] * 20, ignore_index=True)  # 10,000 rows at a time
    assert len(big) > 10_000 and csv_text(big) == pandas(big)
    assert (
        export(big, "csv", tmp_path / "r.csv") is None
        and (tmp_path / "r.csv").read_bytes() == csv_text(big).encode()
    )
    # nothing to quote
    assert csv_text(df.drop(columns="error")) == df.drop(columns="error").to_csv(index=False)
    for left_to_pandas in (df.assign(obj=[[i] for i in range(n)]), df[["error"]], df.iloc[:0],
                           df.assign(f32=np.ones(n, dtype=np.float32) / 3)):
        assert csv_text(left_to_pandas) == left_to_pandas.to_csv(index=False)


def test_csv_times_are_what_isoformat_writes_whole_seconds_fractions_and_missing() -> None:
    """A CSV's started_at/ended_at are made by numpy a block at a time: the same text as each Timestamp's
    isoformat() (no fraction on a whole second), across blocks, with a missing time left empty."""
    from batchsweep.report.export import _times_as_dates, epoch_micros

    rng = np.random.default_rng(7)
    seconds = [1e9, 1e9 + 0.2, 1733500000.000001, 1700000000.9999996, -1.5, 0.0, float("nan"),
               *(round(float(x), int(d))
                 for x, d in zip(rng.uniform(0, 2.5e9, 25_000), rng.integers(0, 7, 25_000)))]
    df = pd.DataFrame({"task": range(len(seconds)), "started_at": seconds, "ended_at": seconds[::-1]})
    texts = _times_as_dates(df, "csv")
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    for name in ("started_at", "ended_at"):
        # datetime's isoformat() of the time to the microsecond (pandas 2.0's to_datetime of a float loses it)
        micros = [epoch_micros(v) for v in df[name]]
        expected = [None if us is None else (epoch + datetime.timedelta(microseconds=us)).isoformat()
                    for us in micros]
        assert [None if pd.isna(v) else v for v in texts[name]] == expected
    assert list(texts["started_at"][2:4]) == ["2024-12-06T15:46:40.000001+00:00", "2023-11-14T22:13:21+00:00"]
    assert list(df["started_at"][:2]) == [1e9, 1e9 + 0.2], "the table given is left as it was"


def test_explain_lines_up_the_why_of_a_file_with_a_wide_name(tmp_path: Path, capsys, monkeypatch) -> None:
    """`explain` padded file names by characters: `漢字.py` (two cells a character) pushed its reason out."""
    from rich.cells import cell_len

    from batchsweep import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.py").write_text("import 漢字, helper\nprint(1)\n")
    (tmp_path / "漢字.py").write_text("X = 1\n")
    (tmp_path / "helper.py").write_text("Y = 1\n")
    spec = write_spec(tmp_path, "name: ex\nscript: s.py\nparams: {grid: {a: [1]}}\nargs: {style: env}\n")
    capsys.readouterr()
    assert cli.main(["explain", str(spec), "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    files = [line for line in out.splitlines() if line.endswith(("by s.py", "the script"))]
    assert len(files) == 3, files
    assert len({cell_len(line[: line.index("imported" if "imported" in line else "the script")])
                for line in files}) == 1, files


def test_explain_shows_a_file_name_s_escape_sequences_escaped(tmp_path: Path, capsys, monkeypatch) -> None:
    """A cloned project's file names are anyone's: one holding OSC and CSI sequences is listed escaped."""
    from batchsweep import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.py").write_text("print(1)\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "\x1b]0;pwned\x07\x1b[2J.txt").write_text("1\n")
    spec = write_spec(tmp_path, "name: ex\nscript: s.py\nparams: {grid: {a: [1]}}\nargs: {style: env}\n"
                                "code: {files: ['data/*']}\n")
    capsys.readouterr()
    assert cli.main(["explain", str(spec), "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "data/\\x1b]0;pwned\\x07\\x1b[2J.txt" in out, out
