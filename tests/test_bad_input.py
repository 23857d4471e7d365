"""Bad input (issue 3, item 9): each case exits 2 with one `error:` line that names the file, field or value,
no traceback, and no run left in the store. Every case runs the real CLI in-process."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from batchsweep import cli

SCRIPTS = Path(__file__).parent / "scripts"

GOOD = """\
name: demo
script: target.py
params:
  grid: {window: [5, 10]}
  fixed: {save_name: out}
"""


@dataclass
class Case:
    id: str
    spec: str | None  # sweep.yaml text; None: write none
    argv: list[str]  # `STORE` is replaced by the store path
    expect: str  # a distinctive substring of the error line
    files: dict[str, str] = field(default_factory=dict)
    xfail: str | None = None


def run_case(
    spec: str, expect: str, *extra: str, files: dict[str, str] | None = None, xfail: str | None = None
) -> Case:
    return Case("", spec, ["run", "sweep.yaml", "--store", "STORE", *extra], expect, files or {}, xfail)


def spec_with(**blocks: str) -> str:
    """GOOD with extra top-level lines, e.g. spec_with(timeout="soon")."""
    return GOOD + "".join(f"{k}: {v}\n" for k, v in blocks.items())


def params(text: str) -> str:
    return f"name: demo\nscript: target.py\nparams: {text}\n"


CASES: dict[str, Case] = {
    "spec file missing": Case(
        "", None, ["run", "nope.yaml", "--store", "STORE"], "nope.yaml: spec file not found"
    ),
    "yaml syntax error": run_case("name: demo\nparams: {grid: [1, 2}\n", "line 2"),
    "spec is not a mapping": run_case("- a\n- b\n", "must be a mapping"),
    "unknown top-level key": run_case(spec_with(retires="2"), "did you mean 'retries'"),
    "unknown nested key": run_case(spec_with(resources="{memroy_mib: 512}"), "resources.memroy_mib"),
    "unknown params block": run_case(params("{gird: {window: [1]}}"), "did you mean 'grid'"),
    "unknown key of the metrics rule": run_case(
        spec_with(metrics="{stdot: last}"), "metrics: unknown key 'stdot'; did you mean 'stdout'?"
    ),
    "misspelt required nested key": run_case(
        params("{random: {samples: 2, sapce: {window: 'randint(1, 9)'}}, fixed: {save_name: o}}"),
        "params.random.sapce: unknown key; did you mean 'space'?",
    ),
    "wrong type": run_case(spec_with(retries="many"), "'many'"),
    "negative retries": run_case(spec_with(retries="-1"), "retries:"),
    "negative max_parallel": run_case(spec_with(max_parallel="-2"), "max_parallel:"),
    "empty params": run_case("name: demo\nscript: target.py\nparams: {}\n", "parameter space is empty"),
    "no params": run_case("name: demo\nscript: target.py\n", "parameter space is empty"),
    "grid value not a list": run_case(
        params("{grid: {window: 5}, fixed: {save_name: o}}"), "window: expected a list"
    ),
    "grid value empty list": run_case(
        params("{grid: {window: []}, fixed: {save_name: o}}"), "list of values is empty"
    ),
    "param the script does not accept": run_case(
        params("{grid: {windw: [5]}, fixed: {save_name: o}}"),
        "it accepts: --window, --symbol, --mode, --save_name",
    ),
    "required flag no param supplies": run_case(params("{grid: {window: [5]}}"), "requires --save_name"),
    "choice not in choices": run_case(
        params("{grid: {mode: [fast, medium]}, fixed: {save_name: o}}"), "'medium'"
    ),
    "script not found": run_case(GOOD.replace("target.py", "nope.py"), "nope.py not found; give the path"),
    "script misspelt": run_case(GOOD.replace("target.py", "targt.py"),
                                "not found; did you mean 'target.py'?"),
    "function module not found": run_case(
        GOOD.replace("script: target.py", "function: nomod:train"), "'nomod'"
    ),
    "function not module:callable": run_case(
        GOOD.replace("script: target.py", "function: train"), "module:callable"
    ),
    "both script and function": run_case(spec_with(function="mod:f"), "exactly one of"),
    "neither script nor function": run_case(GOOD.replace("script: target.py\n", ""), "exactly one of"),
    "same param in two blocks": run_case(
        params("{grid: {window: [5]}, fixed: {window: 6, save_name: o}}"), "'window' is set in both"
    ),
    "zip lists of different lengths": run_case(
        params("{zip: {window: [1, 2], symbol: [A]}, fixed: {save_name: o}}"), "same length"
    ),
    "sweep name with path characters": run_case(GOOD.replace("name: demo", "name: ../x"), "'../x'"),
    "sweep name with a space": run_case(GOOD.replace("name: demo", "name: A B"), "'A B'"),
    "bad duration": run_case(spec_with(timeout="soon"), "'soon'"),
    "zero duration": run_case(spec_with(timeout="0s"), "positive"),
    "misspelled distribution": run_case(
        params("{random: {samples: 2, space: {window: 'unifrom(0, 1)'}}, fixed: {save_name: o}}"), "'unifrom'"
    ),
    "uniform low above high": run_case(
        params("{random: {samples: 2, space: {window: 'uniform(1, 0)'}}, fixed: {save_name: o}}"),
        "low < high",
    ),
    "loguniform from zero": run_case(
        params("{random: {samples: 2, space: {window: 'loguniform(0, 1)'}}, fixed: {save_name: o}}"),
        "low > 0",
    ),
    "randint of floats": run_case(
        params("{random: {samples: 2, space: {window: 'randint(1.5, 3)'}}, fixed: {save_name: o}}"),
        "integers",
    ),
    "random without samples": run_case(
        params("{random: {samples: 0, space: {window: 'randint(1, 3)'}}, fixed: {save_name: o}}"), "samples"
    ),
    "unknown backend": run_case(GOOD, "'kubernetes'", "--backend", "kubernetes"),
    "missing input file": run_case(
        spec_with(inputs="['data/{symbol}.csv']").replace("window: [5, 10]", "symbol: [BTC, ETH]"),
        "data/ETH.csv",
        files={"data/BTC.csv": "1\n"},
    ),
    "unknown placeholder in inputs": run_case(spec_with(inputs="['data/{sym}.csv']"), "{sym}"),
    "bad --set syntax": run_case(GOOD, "--set 'timeout'", "--set", "timeout"),
    "--set to a bad value": run_case(GOOD, "'never'", "--set", "timeout=never"),
    "--set of a param the script does not accept": run_case(GOOD, "--windw", "--set", "windw=1,2"),
    "a float for an int flag": run_case(
        params("{grid: {window: [5, 7.5]}, fixed: {save_name: out}}"), "7.5 is not a valid int"
    ),
    "a word for an int flag": run_case(
        params("{grid: {window: [five]}, fixed: {save_name: out}}"), "'five' is not a valid int"
    ),
    "a value left as CHANGE_ME by init": run_case(
        params("{grid: {window: [5]}, fixed: {save_name: CHANGE_ME}}"), "still CHANGE_ME"
    ),
    "reserved env var": run_case(spec_with(env="{BATCHSWEEP_X: '1'}"), "BATCHSWEEP_X"),
    "bad metrics regex": run_case(spec_with(metrics="{stdout: '('}"), "bad regex"),
    "metrics regex without named groups": run_case(spec_with(metrics=r"{stdout: 'x=(\d+)'}"), "named groups"),
    "status of unknown run": Case("", None, ["status", "nosuch-run", "--store", "STORE"], "'nosuch-run'"),
    "results of unknown run": Case("", None, ["results", "nosuch-run", "--store", "STORE"], "'nosuch-run'"),
    "logs of unknown run": Case("", None, ["logs", "nosuch-run", "0", "--store", "STORE"], "'nosuch-run'"),
    "resume of unknown run": Case("", None, ["resume", "nosuch-run", "--store", "STORE"], "'nosuch-run'"),
    "cancel of unknown run": Case("", None, ["cancel", "nosuch-run", "--store", "STORE"], "'nosuch-run'"),
    "status with an empty store": Case("", None, ["status", "--store", "STORE"], "no runs in store"),
    # issue 15, item 3: nothing escapes the task directory
    "absolute metrics path": run_case(spec_with(metrics="/etc/passwd"), "relative path inside the task"),
    "metrics path through ..": run_case(spec_with(metrics="../m.json"), "'../m.json'"),
    "absolute outputs glob": run_case(spec_with(outputs="['/etc/*']"), "'/etc/*'"),
    "outputs glob through ..": run_case(
        spec_with(outputs="['x/../../*.png']"), "relative path inside the task"
    ),
    "two inputs with one file name": run_case(
        spec_with(inputs="['a/x.csv', 'b/x.csv']"),
        "both be staged as 'x.csv'",
        files={"a/x.csv": "1\n", "b/x.csv": "2\n"},
    ),
    "an input that names no file": run_case(spec_with(inputs="['a/..']"), "names no file", files={"a/x": ""}),
    "a run id that is a path": Case(
        "", None, ["status", "../../etc", "--store", "STORE"], "'../../etc' not found"
    ),
    # issue 30, items 7 and 9: absurd numbers, special files, odd environments
    "a timeout over a year": run_case(spec_with(timeout="99999999999999999999999999s"), "longer than a year"),
    "a timeout over a year by --set": run_case(
        GOOD, "'9000h' is longer than a year", "--set", "timeout=9000h"
    ),
    "10^12 vcpus": run_case(spec_with(resources="{vcpus: 1000000000000}"), "resources.vcpus"),
    "max_parallel 10^12": run_case(spec_with(max_parallel="1000000000000"), "max_parallel:"),
    "an input that is a device": run_case(
        spec_with(inputs="[/dev/zero]"), "/dev/zero (task 0) is a character device"
    ),
    "an env name with =": run_case(
        spec_with(env="{'A=B': '1'}"), "'A=B' cannot be an environment variable's name"
    ),
    "an env name with a NUL": run_case(
        spec_with(env='{"A\\0B": "1"}'), "cannot be an environment variable's name"
    ),
    "an env value with a NUL": run_case(spec_with(env='{A: "1\\0"}'), "env.A: the value holds a NUL byte"),
    "report -o /": Case("", None, ["report", "-o", "/", "--store", "STORE"], "-o /: is a directory"),
    "results -o into a missing directory": Case(
        "",
        None,
        ["results", "-o", "no/such/r.csv", "--store", "STORE"],
        "the directory no/such does not exist",
    ),
    "--store /dev/null": Case(
        "", GOOD, ["run", "sweep.yaml", "--store", "/dev/null"], "store /dev/null: not a directory"
    ),
    "--store a regular file": Case(
        "", GOOD, ["status", "--store", "afile"], "store afile: not a directory", files={"afile": "x"}
    ),
    "init -o a directory": Case(
        "", None, ["init", "target.py", "-o", "/", "--force"], "-o /: is a directory"
    ),
    "init -o into a missing directory": Case(
        "", None, ["init", "target.py", "-o", "no/such.yaml"], "the directory no does not exist"
    ),
    "init of a missing script": Case("", None, ["init", "nope.py"], "nope.py: script not found"),
    "init over an existing sweep.yaml": Case("", GOOD, ["init", "target.py"], "sweep.yaml already exists"),
    "init of a script without argparse": Case(
        "", None, ["init", "plain.py"], "no command-line parser found", files={"plain.py": "print(1)\n"}
    ),
}


def _params() -> list[object]:
    out = []
    for name, case in CASES.items():
        marks = [pytest.mark.xfail(reason=case.xfail, strict=True)] if case.xfail else []
        out.append(pytest.param(case, id=name, marks=marks))
    return out


def assert_one_error_line(err: str, expect: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert expect in lines[0], lines[0]


def no_run_in(store: Path) -> bool:
    runs_dir = store / "runs"
    return not runs_dir.exists() or not any(runs_dir.iterdir())


@pytest.mark.parametrize("case", _params())
def test_bad_input_exits_2_with_one_line_and_no_run(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BATCHSWEEP_STORE", raising=False)
    shutil.copy(SCRIPTS / "u_target.py", tmp_path / "target.py")
    for rel, text in case.files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    if case.spec is not None:
        (tmp_path / "sweep.yaml").write_text(case.spec)
    store = tmp_path / "store"

    code = cli.main([str(store) if a == "STORE" else a for a in case.argv])

    assert code == 2
    assert_one_error_line(capsys.readouterr().err, case.expect)
    assert no_run_in(store)
    assert no_run_in(tmp_path / ".batchsweep")


def test_there_are_at_least_30_cases() -> None:
    assert len([c for c in CASES.values() if not c.xfail]) >= 30


def test_the_good_spec_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The cases above are each one change away from a spec that works."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(SCRIPTS / "u_target.py", tmp_path / "target.py")
    (tmp_path / "sweep.yaml").write_text(GOOD)
    assert cli.main(["run", "sweep.yaml", "--dry-run", "--store", str(tmp_path / "store")]) == 0
    assert "2 tasks" in capsys.readouterr().out


def test_sort_by_an_unknown_column_of_a_finished_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copy(SCRIPTS / "u_target.py", tmp_path / "target.py")
    (tmp_path / "sweep.yaml").write_text(GOOD)
    store = str(tmp_path / "store")
    assert cli.main(["run", "sweep.yaml", "--store", store]) == 0
    capsys.readouterr()

    code = cli.main(["results", "--sort", "nosuchcolumn", "--store", store])

    assert code == 2
    err = capsys.readouterr().err
    assert_one_error_line(err, "--sort nosuchcolumn: no such column")
    assert "window" in err and "value" in err  # the columns it could sort by
    assert len(list((tmp_path / "store" / "runs").iterdir())) == 1


def test_an_input_that_is_a_fifo_is_refused_before_anything_waits_for_its_writer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    monkeypatch.chdir(tmp_path)
    shutil.copy(SCRIPTS / "u_target.py", tmp_path / "target.py")
    os.mkfifo(tmp_path / "data.csv")  # copying it would wait for a writer that never comes
    (tmp_path / "sweep.yaml").write_text(GOOD + "inputs: [data.csv]\n")

    code = cli.main(["run", "sweep.yaml", "--store", str(tmp_path / "store")])

    assert code == 2
    assert_one_error_line(
        capsys.readouterr().err, "inputs: data.csv (task 0) is a FIFO, not a file or directory"
    )
    assert no_run_in(tmp_path / "store")
