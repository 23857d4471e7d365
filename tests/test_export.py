"""The results table written out (`batchsweep.report.export`)."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest

from batchsweep.report.export import export


def test_json_times_stay_whole_milliseconds_since_the_epoch_without_a_pandas_warning():
    """pandas 4 turns `to_json`'s default for datetimes into ISO text and pandas 3 warns of it: the JSON
    export writes the milliseconds itself, as it always has (rounded down, before 1970 too; a missing time
    null), so the file is the same under either."""
    df = pd.DataFrame({"task": [0, 1, 2], "started_at": [1e9 + 0.1234567, None, -1.0005],
                       "ended_at": [1.7e9 + 0.9999996, 5.0, -0.0005]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = export(df, "json", None)
    assert text is not None
    assert json.loads(text) == [
        {"task": 0, "started_at": 1000000000123, "ended_at": 1700000001000},
        {"task": 1, "started_at": None, "ended_at": 5000},
        {"task": 2, "started_at": -1001, "ended_at": -1},
    ]


# -- the export without pandas (`batchsweep.report.plainexport`) against the DataFrame's ------------------
_SCRIPT = """\
import argparse, json
p = argparse.ArgumentParser()
for flag in ("--a", "--label", "--rate", "--note"):
    p.add_argument(flag)
p.parse_args()
"""
_HOSTILE = ["=cmd|' /C calc'!A0", "+1+2", "-2+3", "@SUM(1)", "\tx", "a\rb", 'say "hi", twice', "two\nlines",
            "é ü 漢字 😀 \u2028", "a/b\\c", "", "plain"]


def _finished_run(tmp_path, *, objects: bool, packed: bool, n: int = 24):
    """A finished n-task run written straight into a store as the runner leaves it (or compacted): params
    and metrics with text a spreadsheet would run, quotes, commas, line breaks, non-ASCII and NaN; failed
    tasks with an error and no metrics, tasks with a series (`last_step`), a metric some tasks lack, one
    named like a param; with `objects` also lists, dicts, mixed types and a lone surrogate (the csv
    module's path)."""
    import math

    from batchsweep.model import State, TaskStatus
    from batchsweep.planning import plan as planning
    from batchsweep.store.core import PackEntry, Store

    (tmp_path / "task.py").write_text(_SCRIPT)
    labels = ", ".join(json.dumps(h, ensure_ascii=False) for h in _HOSTILE)
    (tmp_path / "sweep.yaml").write_text(
        "name: hostile\nscript: task.py\nparams:\n  grid:\n"
        f"    a: [1, 2]\n    label: [{labels}]\n  fixed: {{rate: 0.25, note: '=1+1'}}\n"
    )
    p = planning.plan(tmp_path / "sweep.yaml")
    store = Store.open(tmp_path / "store")
    run_id = p.info["run_id"]
    store.create_run(run_id, {**p.info, "base_dir": str(tmp_path)}, p.tasks[:n])

    def entry(task):
        i = task.index
        failed = i % 7 == 3
        status = TaskStatus(
            index=i, state=State.FAILED if failed else State.SUCCEEDED, started_at=1.7e9 + i * 1.0000001,
            ended_at=1.7e9 + i * 1.0000001 + 0.25 * (i % 5), worker=f"local-{i % 2}",
            exit_code=1 if failed else 0,
            error=f'Traceback, "quoted"\nValueError: =bad {_HOSTILE[i % len(_HOSTILE)]}' if failed else None,
            last_step=9 if i % 4 == 0 else None, peak_rss_mib=12.5 + i, cpu_s=None if i % 5 else 0.1 * i,
            outputs=(f"out,{i}.bin", "=x.csv") if i % 6 == 0 else (),
        )
        metrics = None if failed else {
            "loss": float("nan") if i % 5 == 0 else 1 / (i + 1), "acc": i, "note": _HOSTILE[(i + 3) % 12],
            **({"rare": 0.5 * i} if i % 3 == 0 else {}), "a": -i,
            **({"xs": [i, 1 / (i + 3), "s/t"], "d": {"k": [i, None], "é": True}, "mixed": i if i % 2 else "t",
                "flag": bool(i % 2) if i % 4 else None, "odd": "lone \ud800" if i == 1 else "x"}
               if objects else {}),
        }
        assert metrics is None or not isinstance(metrics["loss"], float) or not math.isinf(metrics["loss"])
        return PackEntry(status, metrics)

    if packed:
        store.write_pack(run_id, "compact~1", map(entry, p.tasks[:n]))
    else:
        for task in p.tasks[:n]:
            e = entry(task)
            if e.metrics is not None:
                store.write_json(store.task_metrics_key(run_id, task.index), e.metrics)
            store.write_status(run_id, e.status)
        store.flush_writes()
    return tmp_path / "store", run_id


@pytest.mark.parametrize("objects", [False, True], ids=["columns", "objects"])
@pytest.mark.parametrize("packed", [False, True], ids=["files", "packed"])
def test_the_export_without_pandas_writes_the_bytes_the_dataframe_does(tmp_path, capsys, objects, packed):
    """`batchsweep results --format csv|json` of a local run is written without pandas: the same bytes as
    the table `run.results()` gives written by `export` (hostile text made inert in CSV, NaN and missing
    values empty or null, failed tasks, series columns, lists and dicts), whole and with `--columns`."""
    import batchsweep
    from batchsweep import cli
    from batchsweep.report import plainexport

    store, run_id = _finished_run(tmp_path, objects=objects, packed=packed)
    run = batchsweep.load_run(run_id, store=store)
    df = run.results(refresh=True)
    assert set(df["status"]) == {"succeeded", "failed"} and df["last_step"].notna().any()
    assert ("xs" in df) == objects and "metric_a" in df and df["loss"].isna().any()
    for fmt in ("csv", "json"):
        want = export(df, fmt, None)
        assert plainexport.export(run, fmt, None) == want, fmt
        assert cli.main(["results", run_id, "--store", str(store), "--format", fmt]) == 0
        assert capsys.readouterr().out == want, fmt
        out = tmp_path / f"r.{fmt}"
        assert cli.main(["results", run_id, "--store", str(store), "-o", str(out)]) == 0
        assert out.read_bytes().decode() == want, fmt
        picked = ["label", "task", "error", "started_at"]
        assert cli.main(["results", run_id, "--store", str(store), "--format", fmt,
                         "--columns", ",".join(picked)]) == 0
        assert capsys.readouterr().out == export(df[picked], fmt, None), fmt
    assert "'=cmd|' /C calc'!A0" in export(df, "csv", None)


@pytest.mark.parametrize("packed", [False, True], ids=["files", "packed"])
def test_the_results_table_without_pandas_is_the_dataframes(tmp_path, capsys, packed):
    """`batchsweep results` (the table) of a local run is drawn without pandas: the same text as the table of
    `run.results()`, sorted, picked and whole."""
    import batchsweep
    from batchsweep import cli
    from batchsweep.cli import tables
    from batchsweep.report.results import metric_columns, sort_best_first

    store, run_id = _finished_run(tmp_path, objects=True, packed=packed)
    run = batchsweep.load_run(run_id, store=store)
    df = run.results(refresh=True)
    ordered, note = sort_best_first(df, "loss", metrics=metric_columns(run, df))
    for flags, frame, kw in (
        ([], df, {}),
        (["--sort", "loss"], ordered, {"sort": "loss", "notes": [note]}),
        (["--columns", "label,task,error,started_at"], df,
         {"columns": ["label", "task", "error", "started_at"]}),
    ):
        tables.print_table(tables.columns_of(frame), run, **kw)
        want = capsys.readouterr().out
        assert cli.main(["results", run_id, "--store", str(store), *flags]) == 0
        assert capsys.readouterr().out == want, flags
        if not flags:  # whole: a lone surrogate is shown escaped, a control character too
            assert "lone \\ud800" in want and "two\\x0alines" in want


def test_results_to_csv_or_json_of_a_local_run_does_not_import_pandas(tmp_path):
    """pandas and pyarrow take ~134 MB on import, more than the rest of a 100,000-task export: `batchsweep
    results` writes CSV and JSON of a local run without them, and still records the run's median task time
    for the next submit of the sweep, as the DataFrame path does."""
    import statistics
    import subprocess
    import sys

    import batchsweep

    store, run_id = _finished_run(tmp_path, objects=True, packed=True)
    code = (
        "import sys; from batchsweep.cli import main\n"
        "assert main(['results', sys.argv[1], '--store', sys.argv[2]]) == 0\n"
        "for fmt in ('csv', 'json'):\n"
        "    out = sys.argv[3] + '.' + fmt\n"
        "    argv = ['results', sys.argv[1], '--store', sys.argv[2], '-o', out]\n"
        "    assert main(argv) == 0 and main([*argv, '--sort', 'loss']) == 0\n"
        "print('imported:', sorted(m for m in ('pandas', 'pyarrow', 'numpy') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, run_id, str(store), str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "imported: []"
    run = batchsweep.load_run(run_id, store=store)
    stats = run.store.read_json(run.store.sweep_stats_key(run.name))  # before results() writes its own
    df = run.results(refresh=True)
    ok = df.loc[df["status"] == "succeeded", "duration_s"]
    assert stats["median_task_s"] == statistics.median(ok) and stats["tasks"] == len(ok)
    ordered = df.sort_values("loss", na_position="last", kind="stable")
    assert (tmp_path / "r.json").read_bytes().decode() == export(ordered, "json", None)


def test_times_without_pandas_are_the_texts_and_milliseconds_pandas_makes():
    """Epoch seconds to ISO text (CSV) and whole milliseconds (JSON) without pandas: the same as through
    `pd.to_datetime(unit="s").round("us")` for whole seconds, fractions at every precision, halves of a
    microsecond, times before 1970 and missing ones."""
    import numpy as np

    from batchsweep.report import plainexport
    from batchsweep.report.export import _times_as_dates

    rng = np.random.default_rng(11)
    seconds = [1e9, 1e9 + 0.2, 1733500000.000001, 1700000000.9999996, 1700000000.0000005, -1.5, -0.0000005,
               0.0, float("nan"), None, 5,
               *(round(float(x), int(d))
                 for x, d in zip(rng.uniform(-1e9, 4e9, 20_000), rng.integers(0, 10, 20_000)))]
    df = pd.DataFrame({"task": range(len(seconds)), "started_at": seconds})
    typed = {"task": ("int64", list(range(len(seconds)))), "started_at": (plainexport.kind(seconds), seconds)}
    for fmt in ("csv", "json"):
        want = _times_as_dates(df, fmt)["started_at"]
        got = plainexport._times(typed, fmt)["started_at"][1]
        assert [None if pd.isna(v) else v for v in want] == got, fmt


@pytest.mark.parametrize("key", ["loss", "-label", "+acc", "note", "started_at", "exit_code", "mixed"])
def test_a_sorted_export_without_pandas_is_the_dataframes_sorted(tmp_path, capsys, key):
    """`results --sort KEY` to CSV/JSON: the rows in `sort_best_first`'s order (stable, missing values last,
    by the name rule or a +/- prefix or --asc/--desc) and its note on stderr, without pandas; a column of
    mixed values goes through the DataFrame, with the same result."""
    import batchsweep
    from batchsweep import cli
    from batchsweep.report import plainexport
    from batchsweep.report.results import metric_columns, sort_best_first

    store, run_id = _finished_run(tmp_path, objects=True, packed=True)
    run = batchsweep.load_run(run_id, store=store)
    df = run.results(refresh=True)
    for asc, flag in ((None, []), (True, ["--asc"]), (False, ["--desc"])):
        ordered, note = sort_best_first(df, key, ascending=asc, metrics=metric_columns(run, df))
        for fmt in ("csv", "json"):
            assert cli.main(["results", run_id, "--store", str(store), "--format", fmt, "--sort", key,
                             *flag]) == 0
            out, err = capsys.readouterr()
            assert out == export(ordered, fmt, None) and err.strip() == note, (fmt, flag)
        if key != "mixed":
            assert plainexport.export(run, "csv", None, sort=(key, asc, lambda line: None)) == export(
                ordered, "csv", None)


def test_list_and_dict_metrics_read_back_from_the_results_cache_are_lists_and_dicts(tmp_path):
    """The second `results()` reads the run's results.parquet, where pyarrow gives a list back as a numpy
    array: before, the table then printed `{'x': array([1, 2])}` and compared a list metric elementwise."""
    from helpers import write_spec

    import batchsweep
    from batchsweep.text import cell

    script = tmp_path / "t.py"
    script.write_text(
        "import json, sys\n"
        "a = int(sys.argv[sys.argv.index('--a') + 1])\n"
        "json.dump({'curve': [a, a + 1], 'nested': {'x': [1, 2]}, 'pair': [[a, 1], [2, 3]]},"
        " open('metrics.json', 'w'))\n"
    )
    spec = write_spec(tmp_path, f"name: lists\nscript: {script}\nparams: {{grid: {{a: [1, 2]}}}}\n")
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    first = run.results()
    assert (tmp_path / "store" / "runs" / run.id / "results.parquet").exists()
    again = batchsweep.load_run(run.id, store=tmp_path / "store").results()
    for df in (first, again):
        assert df["curve"].tolist() == [[1, 2], [2, 3]]
        assert df["nested"].tolist() == [{"x": [1, 2]}] * 2
        assert df["pair"].tolist() == [[[1, 1], [2, 3]], [[2, 1], [2, 3]]]
    assert cell(again["pair"][0]) == "[1;1];[2;3]"
