"""Metrics wherever scripts put them (DESIGN §2): stdout, stderr or both, first or last match, missing values
left out, numeric columns numeric, and a success that found no metric said so at the end of the run and in
status."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from batchsweep import cli
from batchsweep.errors import SpecError
from batchsweep.metrics import from_text
from batchsweep.runs import start as runs
from batchsweep.runs.run import Run

PRINTS = '''
import argparse, sys
p = argparse.ArgumentParser()
p.add_argument("--i", type=int)
a = p.parse_args()
print(f"epoch 1 loss={10 + a.i}", file=sys.stderr)
print(f"epoch 2 loss={5 + a.i}", file=sys.stderr)
print(f"acc={0.5 + a.i / 10}")
print("loss=None" if a.i == 2 else f"loss={1 + a.i}", file=sys.stderr)
'''


def sweep(tmp_path: Path, metrics: Any, script: str = PRINTS, grid: dict[str, Any] | None = None) -> Run:
    (tmp_path / "s.py").write_text(textwrap.dedent(script))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "m", "script": "s.py", "metrics": metrics,
                                    "params": {"grid": grid or {"i": [0, 1, 2]}}}))
    return runs.run(path, store=tmp_path / "store", progress=False)


def test_stderr_regex_takes_the_last_match_by_default(tmp_path: Path) -> None:
    df = sweep(tmp_path, {"stderr": r"loss=(?P<loss>\S+)"}).results()
    assert df["loss"].tolist()[:2] == [1, 2]


def test_first_match_wins_when_asked(tmp_path: Path) -> None:
    df = sweep(tmp_path, {"stderr": r"loss=(?P<loss>\S+)", "match": "first"}).results()
    assert df["loss"].tolist() == [10, 11, 12]


def test_both_streams_rule_reads_stdout_and_stderr(tmp_path: Path) -> None:
    df = sweep(
        tmp_path, {"output": r"(acc=(?P<acc>[\d.]+))|(loss=(?P<loss>\S+))", "match": "first"}
    ).results()
    assert df["acc"].tolist() == [0.5, 0.6, 0.7] and df["loss"].tolist() == [10, 11, 12]


def test_none_printed_is_a_missing_value_and_the_column_stays_numeric(tmp_path: Path) -> None:
    run = sweep(tmp_path, {"stderr": r"loss=(?P<loss>\S+)"})
    df = run.results()
    assert df["loss"].dtype.kind in "if"
    assert df.loc[2, "loss"] == 7  # 'None' on the last line is skipped: the last real value stays
    out = tmp_path / "r.parquet"
    cli.main(["results", run.id, "--store", str(tmp_path / "store"), "-o", str(out)])
    assert pd.read_parquet(out)["loss"].dtype.kind in "if"


@pytest.mark.parametrize("text", ["None", "null", "nan", "NaN", "inf", "-inf", ""])
def test_missing_spellings_are_never_recorded(text: str) -> None:
    assert from_text(f"loss={text}\n", r"loss=(?P<loss>\S*)") is None
    assert from_text(f'{{"loss": "{text}", "acc": 1}}\n', "last") == {"acc": 1}


def test_metrics_json_with_nan_and_text_numbers_stays_numeric(tmp_path: Path) -> None:
    script = '''
        import argparse, json
        p = argparse.ArgumentParser(); p.add_argument("--i", type=int); a = p.parse_args()
        json.dump({"loss": float("nan") if a.i == 0 else "0.25", "name": "x"}, open("metrics.json", "w"))
    '''
    df = sweep(tmp_path, "metrics.json", script, {"i": [0, 1]}).results()
    assert df["loss"].isna().tolist() == [True, False] and df.loc[1, "loss"] == 0.25
    assert df["loss"].dtype.kind == "f" and df["name"].tolist() == ["x", "x"]


def test_successes_without_metrics_are_counted_at_the_end_and_in_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "s.py").write_text(textwrap.dedent(PRINTS))
    (tmp_path / "sweep.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "m",
                "script": "s.py",
                "metrics": {"stdout": r"accuracy=(?P<acc>\S+)"},
                "params": {"grid": {"i": [0, 1]}},
            }
        )
    )
    store = str(tmp_path / "store")
    assert cli.main(["run", str(tmp_path / "sweep.yaml"), "--store", store]) == 0
    captured = capsys.readouterr()
    run_id = captured.out.splitlines()[0]
    expect = (f"2 tasks succeeded without metrics — stdout rule 'accuracy=(?P<acc>\\S+)' matched nothing; "
              f"their output is in `batchsweep logs {run_id} 0`")
    assert expect in captured.err
    cli.main(["status", run_id, "--store", store])
    assert "2 tasks succeeded without metrics" in capsys.readouterr().out


def test_a_stdout_rule_whose_numbers_went_to_stderr_says_so(tmp_path: Path) -> None:
    run = sweep(tmp_path, {"stdout": r"loss=(?P<loss>\d+)"}, grid={"i": [0]})
    assert run.statuses()[0].metrics_missing == (
        r"stdout rule 'loss=(?P<loss>\d+)' matched nothing (it matches stderr: write metrics: {stderr: ...} "
        "or {output: ...})")


def test_a_run_whose_metrics_were_found_says_nothing_about_missing_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "s.py").write_text(textwrap.dedent(PRINTS))
    (tmp_path / "sweep.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "m",
                "script": "s.py",
                "metrics": {"stdout": r"acc=(?P<acc>\S+)"},
                "params": {"grid": {"i": [0]}},
            }
        )
    )
    assert cli.main(["run", str(tmp_path / "sweep.yaml"), "--store", str(tmp_path / "store")]) == 0
    assert "without metrics" not in capsys.readouterr().err


def test_failed_task_error_holds_its_last_stderr_line(tmp_path: Path) -> None:
    script = '''
        import argparse
        p = argparse.ArgumentParser(); p.add_argument("--i", type=int); a = p.parse_args()
        if a.i == 1:
            raise ValueError(f"bad i={a.i}")
    '''
    df = sweep(tmp_path, "metrics.json", script, {"i": [0, 1]}).results()
    assert df.loc[1, "error"] == "exit code 1: ValueError: bad i=1"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"stdout": "last", "stderr": "last"}, "give one of stdout:, stderr: or output:"),
        ({"match": "first"}, "give one of stdout:, stderr: or output:"),
        ({"stderr": "loss=([0-9.]+)"}, "has no named groups"),
        (
            {"stderr": "last", "match": "middle"},
            "metrics: match: Input should be .first. or .last. \\(got .middle.\\)",
        ),
    ],
)
def test_bad_metric_rules_are_one_line_errors(tmp_path: Path, rule: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        sweep(tmp_path, rule)


def test_report_says_when_there_is_no_metric(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = sweep(tmp_path, {"stdout": r"nothing=(?P<x>\d)"}, grid={"i": [0]})
    out = tmp_path / "r.html"
    assert cli.main(["report", run.id, "--store", str(tmp_path / "store"), "-o", str(out)]) == 0
    assert "no numeric metric to plot" in capsys.readouterr().out




def test_a_metrics_file_is_read_in_memory_its_size_not_the_limits(tmp_path):
    """Each finished task's metrics.json is read by the runner: a buffer of the 32 MiB limit per read was most
    of a local runner's peak memory. A file over the limit is still refused."""
    import tracemalloc

    from batchsweep.metrics import UnsafeMetricsFile, read_file

    path = tmp_path / "metrics.json"
    path.write_text('{"loss": 0.25}')
    tracemalloc.start()
    try:
        assert read_file(path) == b'{"loss": 0.25}'
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"reading a 14-byte file took {peak} bytes"
    path.write_bytes(b"x" * 2001)
    assert read_file(path, limit=2001) == b"x" * 2001
    with pytest.raises(UnsafeMetricsFile, match="larger than"):
        read_file(path, limit=2000)


def test_colour_codes_a_logger_writes_are_not_part_of_a_value() -> None:
    # hydra-colorlog's `[INFO] - Test score: 1.0\x1b[0m`, and rich's bold JSON
    assert from_text("\x1b[32m[INFO]\x1b[0m - Test score: 1.0\x1b[0m\n", r"Test score: (?P<score>\S+)") == {
        "score": 1.0
    }
    assert from_text('\x1b[1m{"loss": 0.5}\x1b[0m\n', "last") == {"loss": 0.5}


def test_a_json_object_printed_over_several_lines_at_the_end_is_the_last_rules_metrics() -> None:
    import json

    printed = "starting\n" + json.dumps({"pi": 3.14, "n": 1000, "runs": [{"seed": 1}]}, indent=2) + "\n"
    assert from_text(printed, "last") == {"pi": 3.14, "n": 1000, "runs": [{"seed": 1}]}
    assert from_text("done\n}\n", "last") is None
