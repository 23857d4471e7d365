"""Commands that read a run default to the latest one: `logs 7` is task 7 of the latest run, `resume` and
`cancel` without RUN act on it too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import write_spec

import batchsweep
from batchsweep import cli

SCRIPTS = Path(__file__).parent / "scripts"


def two_runs(tmp_path: Path) -> tuple[str, str]:
    store = str(tmp_path / "store")
    spec = write_spec(tmp_path, f"""
        name: latest
        script: {SCRIPTS / 'prints_result.py'}
        params: {{grid: {{var_a: [1, 2, 3]}}, fixed: {{var_b: 1, save_name: "s{{var_a}}"}}}}
    """)
    first = batchsweep.run(spec, store=store, progress=False, overrides=["var_a=10,20,30"])
    batchsweep.run(spec, store=store, progress=False)
    return store, first.id


def test_logs_task_alone_reads_the_latest_run(tmp_path: Path, capsys) -> None:
    store, first = two_runs(tmp_path)
    capsys.readouterr()
    assert cli.main(["logs", "2", "--store", store]) == 0
    latest = capsys.readouterr().out
    assert cli.main(["logs", first, "2", "--store", store]) == 0
    older = capsys.readouterr().out
    assert latest and older and latest != older
    assert latest.splitlines()[-1] == "3" and older.splitlines()[-1] == "30"  # var_a * var_b


def test_logs_with_a_bad_task_is_one_error_line(tmp_path: Path, capsys) -> None:
    store, _ = two_runs(tmp_path)
    assert cli.main(["logs", "9", "--store", store]) == 2
    assert "task 9 does not exist" in capsys.readouterr().err
    assert cli.main(["logs", "latest", "--store", store]) == 2
    assert "give [RUN] TASK" in capsys.readouterr().err


def test_resume_and_cancel_default_to_the_latest_run(tmp_path: Path, capsys) -> None:
    store, _ = two_runs(tmp_path)
    latest = batchsweep.load_run(store=store).id
    capsys.readouterr()
    assert cli.main(["resume", "--store", store]) == 0
    assert capsys.readouterr().out.splitlines() == [latest, "nothing to resume: every task succeeded"]
    assert cli.main(["cancel", "--store", store]) == 0
    assert capsys.readouterr().out.strip() == f"{latest} is not running; nothing to cancel"


def test_logs_of_a_task_that_wrote_nothing_says_so(tmp_path: Path, capsys) -> None:
    store, _ = two_runs(tmp_path)
    capsys.readouterr()
    assert cli.main(["logs", "0", "--stderr", "--store", store]) == 0
    out = capsys.readouterr()
    assert out.out == "" and "it wrote nothing to stderr" in out.err


def test_status_of_a_detached_local_run_shows_its_running_tasks(tmp_path: Path, capsys) -> None:
    import time

    store = str(tmp_path / "store")
    spec = write_spec(tmp_path, f"""
        name: detached
        script: {SCRIPTS / 'writes_metrics.py'}
        params: {{grid: {{a: [1, 2, 3, 4]}}, fixed: {{sleep: 30}}}}
        max_parallel: 2
    """)
    run = batchsweep.run(spec, store=store, detach=True)
    try:
        deadline = time.monotonic() + 120
        while sorted(s.value for s in batchsweep.load_run(run.id, store=store).states().values()) != \
                ["pending", "pending", "running", "running"]:
            assert time.monotonic() < deadline, "the detached runner's tasks never showed as running"
            time.sleep(0.1)
        capsys.readouterr()
        assert cli.main(["status", "--store", store]) == 0
        assert "tasks    2 running, 2 pending (of 4)" in capsys.readouterr().out
        assert cli.main(["results", "--format", "csv", "--store", store]) == 0
        assert capsys.readouterr().out.count(",running,") == 2
    finally:
        run.cancel()


@pytest.mark.parametrize("argv", [["play", "--help"], ["serve", "-h"], ["--help"]])
def test_the_emulator_prints_its_usage_on_help(argv: list[str], capsys) -> None:
    from batchsweep.emulator import server as emulator

    assert emulator.main(argv) == 0
    assert "python -m batchsweep.emulator play RUN_ID" in capsys.readouterr().out


HEAVY = (
    "pandas",
    "numpy",
    "pyarrow",
    "pydantic",
    "yaml",
    "rich",
    "boto3",
    "botocore",
    "optuna",
    "distributed",
)
STARTUP = """
import json, sys, time
t = time.process_time()
from batchsweep import cli
parser = cli.build_parser()
parser.format_help()
elapsed = time.process_time() - t
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print(json.dumps({{"elapsed": elapsed, "heavy": heavy, "commands": sorted(parser._subparsers._group_actions[0].choices)}}))
"""  # noqa: E501


def test_the_cli_starts_fast_every_command_group_registered_and_no_heavy_module_loaded() -> None:
    """`batchsweep --help` (and every command's parsing) loads the command modules only: the library loads
    inside a command. The time is the CPU time the import and the parser cost (best of three), which a machine
    loaded by other work leaves alone; wall time there can be several times larger."""
    import json
    import subprocess
    import sys

    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", STARTUP.format(heavy=HEAVY)],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout
        )
        for _ in range(3)
    ]
    assert runs[0]["heavy"] == []
    assert {
        "run",
        "estimate",
        "explain",
        "resume",
        "wait",
        "cancel",
        "init",
        "status",
        "results",
        "logs",
        "report",
        "study",
        "diff",
        "rerun",
        "runs",
        "gc",
        "infra",
        "image",
        "doctor",
    } == set(runs[0]["commands"])
    assert min(r["elapsed"] for r in runs) < 0.3


@pytest.mark.parametrize("command", ["results", "report"])
def test_a_run_and_a_sweep_together_are_refused(command: str, tmp_path: Path, capsys) -> None:
    assert cli.main([command, "some-run", "--sweep", "some-sweep", "--store", str(tmp_path / "store")]) == 2
    assert capsys.readouterr().err == f"error: {command}: give a RUN or --sweep NAME, not both\n"


def test_status_names_the_params_of_each_failed_task_it_shows(tmp_path: Path, capsys) -> None:
    store = str(tmp_path / "store")
    spec = write_spec(tmp_path, f"""
        name: failing
        script: {SCRIPTS / 'writes_metrics.py'}
        params: {{grid: {{a: [1, 2, 3, 4, 5, 6]}}, fixed: {{fail_on: 4}}}}
    """)
    run = batchsweep.run(spec, store=store, progress=False)
    capsys.readouterr()
    assert cli.main(["status", run.id, "--store", store]) == 0
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if "failing on purpose" in line]
    assert row.split()[:2] == ["3", "failed"] and row.split()[-2:] == ["a=4", "fail_on=4"]


def test_a_run_is_named_by_any_unique_part_of_its_id(tmp_path: Path, capsys) -> None:
    store, first = two_runs(tmp_path)
    second = batchsweep.load_run(store=store).id
    capsys.readouterr()
    suffix = first.rsplit("-", 1)[1]  # the short part after the date, as a user copies it
    if suffix in second:  # two random suffixes sharing 4 hex digits: the test's premise does not hold
        pytest.skip("both runs drew the same suffix")
    assert cli.main(["logs", suffix, "2", "--store", store]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "30"
    assert batchsweep.load_run(first[:-2], store=store).id == first  # a prefix still names it
    assert cli.main(["logs", "latest-", "2", "--store", store]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ambiguous" in err[0] and first in err[0] and second in err[0]
    assert cli.main(["logs", "zz9", "2", "--store", store]) == 2
    assert "not found" in capsys.readouterr().err


def test_diff_shows_spec_changes_as_the_spec_writes_them(tmp_path: Path, capsys) -> None:
    store = str(tmp_path / "store")
    runs = []
    for extra in ("", "metrics: {stdout: 'loss=(?P<loss>[-0-9.]+)'}, retries: 2"):
        spec = write_spec(tmp_path, f"""
            name: diffed
            script: {SCRIPTS / 'prints_result.py'}
            params: {{grid: {{var_a: [1, 2]}}, fixed: {{var_b: 1, save_name: "s{{var_a}}"}}}}
            {extra.replace(", ", chr(10) + " " * 12)}
        """)
        runs.append(batchsweep.run(spec, store=store, progress=False).id)
    capsys.readouterr()
    assert cli.main(["diff", *runs, "--store", store]) == 0
    out = capsys.readouterr().out.splitlines()
    spec = out[out.index("spec         changed") + 1:]
    assert spec[:2] == ["  metrics: metrics.json -> {stdout: 'loss=(?P<loss>[-0-9.]+)', match: last}",
                        "  retries: 0 -> 2"], out
    assert "  task 1 {\"save_name\": \"s2\", \"var_a\": 2, \"var_b\": 1}: loss (none) -> 1" in out
    assert not [line for line in out if "None" in line]


def test_csv_and_parquet_exports_give_times_as_times(tmp_path: Path, capsys) -> None:
    import csv
    import re
    from datetime import datetime

    import pandas as pd

    store, first = two_runs(tmp_path)
    epoch = batchsweep.load_run(first, store=store).results()["started_at"].tolist()
    assert cli.main(["results", first, "--store", store, "-o", str(tmp_path / "r.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    iso = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00"  # microseconds at most: no float noise
    assert all(re.fullmatch(iso, row["started_at"]) and re.fullmatch(iso, row["ended_at"]) for row in rows), (
        rows
    )
    assert [datetime.fromisoformat(row["started_at"]).timestamp() for row in rows] == pytest.approx(
        epoch, abs=1e-3
    )
    assert cli.main(["results", first, "--store", store, "-o", str(tmp_path / "r.parquet")]) == 0
    df = pd.read_parquet(tmp_path / "r.parquet")
    assert str(df["started_at"].dtype).startswith("datetime64") and str(df["started_at"].dt.tz) == "UTC"
    assert [t.timestamp() for t in df["ended_at"]] == pytest.approx(
        batchsweep.load_run(first, store=store).results()["ended_at"].tolist(), abs=1e-3)


def test_dry_run_command_lines_start_in_one_column_past_task_10(tmp_path: Path, capsys) -> None:
    spec = write_spec(tmp_path, f"""
        name: aligned
        script: {SCRIPTS / 'prints_result.py'}
        params: {{grid: {{var_a: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]}}, fixed: {{var_b: 1, save_name: s}}}}
    """)  # noqa: E501
    capsys.readouterr()
    assert cli.main(["run", str(spec), "--dry-run", "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out.splitlines()
    lines = out[next(i for i, line in enumerate(out) if line.startswith("command lines")) + 1:][:12]
    starts = {line.index("python") for line in lines if "python" in line}
    assert len(lines) == 12 and len(starts) == 1, lines
    assert lines[0].startswith("   0  ") and lines[11].startswith("  11  ")


def test_dry_run_table_of_an_elided_plan_keeps_its_numbers_right_aligned(tmp_path: Path, capsys) -> None:
    """Past 20 tasks the dry run's table elides rows with a `…` row, which turned its task and param columns
    of numbers left-aligned."""
    values = [*range(1, 21), 2000]
    spec = write_spec(tmp_path, f"""
        name: elided
        script: {SCRIPTS / 'prints_result.py'}
        params: {{grid: {{var_a: {values}}}, fixed: {{var_b: 1, save_name: s}}}}
    """)
    capsys.readouterr()
    assert cli.main(["run", str(spec), "--dry-run", "--store", str(tmp_path / "store")]) == 0
    rows = capsys.readouterr().out.splitlines()[2:22]
    assert rows[17].strip() == "…" and rows[0].split()[:2] == ["0", "1"]
    assert rows[-1].split()[:2] == ["20", "2000"]
    for column in (0, 1):  # each column's numbers end in one place
        ends = {[m.end() for m in re.finditer(r"\S+", row)][column] for row in rows if row.strip() != "…"}
        assert len(ends) == 1, rows


def test_dry_run_table_has_an_inputs_column_only_for_a_sweep_that_stages_inputs(tmp_path: Path,
                                                                                 capsys) -> None:
    """The README tour's `run examples/tutorial/sweep.yaml --dry-run` showed an empty `inputs` column."""
    (tmp_path / "a.csv").write_text("x\n")
    for inputs, header in (("", "task var_a var_b save_name"),
                           ("inputs: [a.csv]", "task var_a var_b save_name inputs")):
        spec = write_spec(tmp_path, f"""
            name: cols
            script: {SCRIPTS / 'prints_result.py'}
            params: {{grid: {{var_a: [1, 2]}}, fixed: {{var_b: 1, save_name: s}}}}
            {inputs}
        """)
        capsys.readouterr()
        assert cli.main(["run", str(spec), "--dry-run", "--store", str(tmp_path / "store")]) == 0
        first = capsys.readouterr().out.splitlines()[0]
        assert first.split() == header.split(), first
