"""The job contract's argparse mapping (docs/design.md §2): reading a script's flags without running its main
work, and turning params into an argv that the script parses back to the same values, never through a
shell."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchsweep.errors import SpecError
from batchsweep.planning import plan as planning
from batchsweep.runs import start as runs
from batchsweep.scripts.argv import build_argv
from batchsweep.scripts.flags import ScriptFlags
from batchsweep.scripts.options import read_flags
from batchsweep.scripts.paramchecks import check_params

SCRIPTS = Path(__file__).parent / "scripts"

RICH_PARSER = '''
def build():
    p = argparse.ArgumentParser()
    p.add_argument("infile", help="input file")
    p.add_argument("--lr", type=float, default=0.1, help="learning rate")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--no-cache", dest="cache", action="store_false")
    p.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--layers", type=int, nargs="+", default=[1])
    p.add_argument("--tag", action="append")
    p.add_argument("--mode", choices=["fast", "slow"], default="fast")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--config")
    p.add_argument("--save-name", default="x")
    p.add_argument("-v", "--verbosity", action="count", default=0)
    return p
'''


def write_script(path: Path, body: str, marker: Path) -> Path:
    path.write_text(f"import argparse\nimport json\nMARKER = {str(marker)!r}\n{body}")
    return path


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ScriptFlags, Path]:
    """A script whose parser is built inside main(), behind `if __name__ == "__main__"`."""
    d = tmp_path_factory.mktemp("rich")
    marker = d / "main-work-ran"
    script = write_script(d / "train.py", RICH_PARSER + '''
def main():
    args = build().parse_args()
    open(MARKER, "w").write("ran")
    with open("parsed.json", "w") as f:
        json.dump(vars(args), f)

if __name__ == "__main__":
    main()
''', marker)
    return script, read_flags(script), marker


def parse_back(script: Path, argv: list[str], cwd: Path) -> dict[str, Any]:
    """Run the script for real with argv (no shell) and return the namespace it parsed."""
    done = subprocess.run(
        [sys.executable, str(script), *argv], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads((cwd / "parsed.json").read_text())  # type: ignore[no-any-return]


BASE = {"infile": "in.csv", "seed": 1}


# -- read_flags ---------------------------------------------------------------------------------------
def test_parser_inside_main_behind_main_guard_is_found(rich: tuple[Path, ScriptFlags, Path]) -> None:
    _, flags, _ = rich
    assert flags.known
    assert [f.dest for f in flags.flags] == [
        "infile", "lr", "offset", "verbose", "cache", "shuffle", "layers", "tag", "mode", "seed", "config",
        "save_name", "verbosity",
    ]


def test_main_work_does_not_run_during_introspection(rich: tuple[Path, ScriptFlags, Path]) -> None:
    _, _, marker = rich
    assert not marker.exists()


def test_parser_at_module_level_is_found_without_running_main_work(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = write_script(tmp_path / "flat.py", '''
parser = argparse.ArgumentParser()
parser.add_argument("--window", type=int, default=5, help="window length")
args = parser.parse_args()
open(MARKER, "w").write("ran")
''', marker)
    flags = read_flags(script)
    window = flags.lookup("window")
    assert flags.known and window is not None
    assert (window.default, window.help, window.kind) == (5, "window length", "store")
    assert not marker.exists()


def test_parse_known_args_is_intercepted_too(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = write_script(tmp_path / "known.py", '''
parser = argparse.ArgumentParser()
parser.add_argument("--a")
args, rest = parser.parse_known_args()
open(MARKER, "w").write("ran")
''', marker)
    assert read_flags(script).lookup("a") is not None
    assert not marker.exists()


def test_script_without_argparse_is_unknown(tmp_path: Path) -> None:
    script = tmp_path / "plain.py"
    script.write_text("import sys\nprint(sys.argv)\n")
    assert read_flags(script) == ScriptFlags(known=False)


def test_script_that_never_parses_is_unknown(tmp_path: Path) -> None:
    script = tmp_path / "noparse.py"
    script.write_text("import argparse\nparser = argparse.ArgumentParser()\n")
    assert read_flags(script).known is False


def test_script_that_crashes_on_import_is_unknown(tmp_path: Path) -> None:
    script = tmp_path / "crash.py"
    script.write_text("import argparse\nraise SystemExit(3)\n")
    assert read_flags(script).known is False


def test_flag_kinds_are_recognised(rich: tuple[Path, ScriptFlags, Path]) -> None:
    _, flags, _ = rich
    kinds = {f.dest: f.kind for f in flags.flags}
    assert kinds["verbose"] == "store_true"
    assert kinds["cache"] == "store_false"
    assert kinds["shuffle"] == "boolean_optional"
    assert kinds["tag"] == "append"
    assert kinds["verbosity"] == "count"
    assert kinds["lr"] == "store"


def test_positional_is_required_and_has_no_option(rich: tuple[Path, ScriptFlags, Path]) -> None:
    infile = rich[1].lookup("infile")
    assert infile is not None and infile.positional and infile.required


def test_required_choices_nargs_and_defaults_are_read(rich: tuple[Path, ScriptFlags, Path]) -> None:
    flags = rich[1]
    seed, mode, layers, lr = (flags.lookup(n) for n in ("seed", "mode", "layers", "lr"))
    assert seed is not None and seed.required
    assert mode is not None and mode.choices == ("fast", "slow")
    assert layers is not None and layers.nargs == "+" and layers.takes_many
    assert lr is not None and (lr.default, lr.help) == (0.1, "learning rate")


def test_dashed_option_is_found_by_underscore_or_dash_name(rich: tuple[Path, ScriptFlags, Path]) -> None:
    flags = rich[1]
    assert flags.lookup("save_name") is flags.lookup("save-name") is not None


def test_boolean_optional_uses_the_positive_option(rich: tuple[Path, ScriptFlags, Path]) -> None:
    shuffle = rich[1].lookup("shuffle")
    assert shuffle is not None and shuffle.option == "--shuffle"


# -- build_argv, parsed back by the real script -------------------------------------------------------
def test_negative_numbers_reach_the_script(rich: tuple[Path, ScriptFlags, Path], tmp_path: Path) -> None:
    script, flags, _ = rich
    argv = build_argv({**BASE, "offset": -5, "lr": -0.25}, flags)
    assert "--offset=-5" in argv
    parsed = parse_back(script, argv, tmp_path)
    assert (parsed["offset"], parsed["lr"]) == (-5, -0.25)


def test_nargs_list_is_passed_as_repeated_values(tmp_path: Path) -> None:
    script = write_script(tmp_path / "nargs.py", '''
parser = argparse.ArgumentParser()
parser.add_argument("--layers", type=int, nargs="+")
with open("parsed.json", "w") as f:
    json.dump(vars(parser.parse_args()), f)
''', tmp_path / "ran")
    argv = build_argv({"layers": [64, -1, 32]}, read_flags(script))
    assert argv == ["--layers", "64", "-1", "32"]
    assert parse_back(script, argv, tmp_path)["layers"] == [64, -1, 32]


def test_nargs_list_before_a_positional_reaches_the_script(rich: tuple[Path, ScriptFlags, Path],
                                                           tmp_path: Path) -> None:
    script, flags, _ = rich
    parsed = parse_back(script, build_argv({**BASE, "layers": [64, -1, 32]}, flags), tmp_path)
    assert (parsed["layers"], parsed["infile"]) == ([64, -1, 32], "in.csv")


def test_append_list_repeats_the_option(rich: tuple[Path, ScriptFlags, Path], tmp_path: Path) -> None:
    script, flags, _ = rich
    argv = build_argv({**BASE, "tag": ["a", "b"]}, flags)
    assert argv.count("--tag") == 2
    assert parse_back(script, argv, tmp_path)["tag"] == ["a", "b"]


def test_list_without_nargs_is_passed_as_json(rich: tuple[Path, ScriptFlags, Path], tmp_path: Path) -> None:
    script, flags, _ = rich
    parsed = parse_back(script, build_argv({**BASE, "config": [1, {"k": "v"}]}, flags), tmp_path)
    assert json.loads(parsed["config"]) == [1, {"k": "v"}]


@pytest.mark.parametrize(("value", "expect_arg", "parsed"), [(True, "--verbose", True), (False, None, False)])
def test_store_true_is_the_bare_flag_or_nothing(rich: tuple[Path, ScriptFlags, Path], tmp_path: Path,
                                                value: bool, expect_arg: str | None, parsed: bool) -> None:
    script, flags, _ = rich
    argv = build_argv({**BASE, "verbose": value}, flags)
    assert ("--verbose" in argv) is (expect_arg is not None)
    assert parse_back(script, argv, tmp_path)["verbose"] is parsed


@pytest.mark.parametrize(("value", "present"), [(False, True), (True, False)])
def test_store_false_flag_is_given_only_for_false(rich: tuple[Path, ScriptFlags, Path], tmp_path: Path,
                                                  value: bool, present: bool) -> None:
    script, flags, _ = rich
    argv = build_argv({**BASE, "cache": value}, flags)
    assert ("--no-cache" in argv) is present
    assert parse_back(script, argv, tmp_path)["cache"] is value


@pytest.mark.parametrize(("value", "arg"), [(True, "--shuffle"), (False, "--no-shuffle")])
def test_boolean_optional_gives_flag_or_no_flag(rich: tuple[Path, ScriptFlags, Path], tmp_path: Path,
                                                value: bool, arg: str) -> None:
    script, flags, _ = rich
    argv = build_argv({**BASE, "shuffle": value}, flags)
    assert arg in argv
    assert parse_back(script, argv, tmp_path)["shuffle"] is value


def test_count_repeats_the_flag(rich: tuple[Path, ScriptFlags, Path], tmp_path: Path) -> None:
    script, flags, _ = rich
    assert parse_back(script, build_argv({**BASE, "verbosity": 3}, flags), tmp_path)["verbosity"] == 3


def test_positional_and_dashed_option_reach_the_script(
    rich: tuple[Path, ScriptFlags, Path], tmp_path: Path
) -> None:
    script, flags, _ = rich
    parsed = parse_back(
        script, build_argv({"seed": 2, "infile": "data x.csv", "save_name": "r1"}, flags), tmp_path
    )
    assert (parsed["infile"], parsed["save_name"], parsed["seed"]) == ("data x.csv", "r1", 2)


def test_positional_value_starting_with_a_dash_reaches_the_script(rich: tuple[Path, ScriptFlags, Path],
                                                                   tmp_path: Path) -> None:
    script, flags, _ = rich
    assert (
        parse_back(script, build_argv({**BASE, "infile": "-data.csv"}, flags), tmp_path)["infile"]
        == "-data.csv"
    )


def test_option_value_starting_with_a_dash_reaches_the_script(rich: tuple[Path, ScriptFlags, Path],
                                                              tmp_path: Path) -> None:
    script, flags, _ = rich
    assert (
        parse_back(script, build_argv({**BASE, "config": "--not-a-flag"}, flags), tmp_path)["config"]
        == "--not-a-flag"
    )


def test_none_is_omitted(rich: tuple[Path, ScriptFlags, Path]) -> None:
    assert "--config" not in build_argv({**BASE, "config": None}, rich[1])


def test_private_params_are_not_passed(rich: tuple[Path, ScriptFlags, Path]) -> None:
    argv = build_argv({**BASE, "_note": "x"}, rich[1])
    assert not any("note" in a for a in argv)
    assert build_argv({"_note": "x", "n": 1}, ScriptFlags(known=False)) == ["--n", "1"]


def test_repeat_is_not_passed_when_the_script_does_not_declare_it(
    rich: tuple[Path, ScriptFlags, Path],
) -> None:
    assert "--repeat" not in build_argv({**BASE, "repeat": 1}, rich[1])


def test_repeat_is_passed_when_the_script_declares_it(tmp_path: Path) -> None:
    script = write_script(tmp_path / "rep.py", '''
parser = argparse.ArgumentParser()
parser.add_argument("--repeat", type=int)
parser.parse_args()
''', tmp_path / "ran")
    assert build_argv({"repeat": 2}, read_flags(script)) == ["--repeat", "2"]


def test_unknown_script_gets_one_flag_per_param(tmp_path: Path) -> None:
    argv = build_argv({"a": 1, "b": "x y", "on": True, "off": False, "xs": [1, 2]}, ScriptFlags(known=False))
    assert argv == ["--a", "1", "--b", "x y", "--on", "--xs", "[1, 2]"]


# -- check_params -------------------------------------------------------------------------------------
def test_unknown_param_lists_the_accepted_flags(rich: tuple[Path, ScriptFlags, Path]) -> None:
    script, flags, _ = rich
    with pytest.raises(
        SpecError, match=r"params.windw: train.py does not accept --windw; it accepts: infile, --lr"
    ):
        check_params(script, flags, {**BASE, "windw": 1})


def test_required_flag_without_a_param_is_reported(rich: tuple[Path, ScriptFlags, Path]) -> None:
    script, flags, _ = rich
    with pytest.raises(SpecError, match="train.py requires --seed but no param supplies it"):
        check_params(script, flags, {"infile": "a"})


def test_value_outside_choices_is_reported(rich: tuple[Path, ScriptFlags, Path]) -> None:
    script, flags, _ = rich
    with pytest.raises(
        SpecError, match=r"params.mode: 'medium' is not one of train.py's choices \['fast', 'slow'\]"
    ):
        check_params(script, flags, {**BASE, "mode": "medium"})


def test_valid_params_pass_the_check(rich: tuple[Path, ScriptFlags, Path]) -> None:
    script, flags, _ = rich
    check_params(script, flags, {**BASE, "mode": "slow", "repeat": 0, "_private": 1, "tag": ["a"]})


# -- a real sweep: weird paths and weird values, never through a shell -------------------------------
WEIRD_VALUES = [
    "two words",
    'it\'s "quoted"',
    "$(rm -rf /)",
    "a; echo pwned",
    "`id` && ls",
    "ünï ☃",
    "--dashes",
    "back\\slash",
    "*",
]


def test_weird_path_and_values_reach_the_script_verbatim(tmp_path: Path) -> None:
    code_dir = tmp_path / "my dir 'q' \"dq\" ünï"
    code_dir.mkdir()
    shutil.copy(SCRIPTS / "u_echo.py", code_dir / "echo it's ü.py")
    spec = {
        "name": "weird",
        "script": "echo it's ü.py",
        "params": {"list": [{"text": v} for v in WEIRD_VALUES], "fixed": {"n": -3}},
        "timeout": "30s",
    }
    spec_path = code_dir / "sweep 1.yaml"
    spec_path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")

    run = runs.run(spec_path, store=tmp_path / "store", progress=False)

    assert run.exit_code == 0
    metrics = run.store.read_metrics(run.id, range(len(WEIRD_VALUES)))
    assert [metrics[i]["text"] for i in range(len(WEIRD_VALUES))] == WEIRD_VALUES
    assert {metrics[i]["n"] for i in metrics} == {-3}
    for i, value in enumerate(WEIRD_VALUES):  # one argv element per value: nothing split, nothing expanded
        assert json.loads(metrics[i]["argv"]) in (["--text", value, "--n=-3"], [f"--text={value}", "--n=-3"])
    assert not (tmp_path / "pwned").exists()


# -- argparse as people write it: run end to end, values read back from what the script parsed --------------
def sweep(tmp_path: Path, script: str, spec: dict[str, Any]) -> Any:
    """Run a sweep of a script that prints its parsed namespace as JSON; returns (run, results)."""
    (tmp_path / "s.py").write_text("import argparse, json, os\n" + textwrap.dedent(script)
                                   + "\nprint(json.dumps({'got_' + k: v for k, v in vars(args).items()}))\n")
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "script": "s.py", "metrics": {"stdout": "last"}, **spec}))
    run = runs.run(path, store=tmp_path / "store", progress=False)
    return run, run.results()


def test_nargs_flag_with_a_list_default_sweeps_lists(tmp_path: Path) -> None:
    run, df = sweep(tmp_path, '''
        p = argparse.ArgumentParser()
        p.add_argument("--layers", type=int, nargs="+", default=[64, 32])
        p.add_argument("--sizes", type=int, nargs=2, default=[1, 1])
        args = p.parse_args()
    ''', {"params": {"grid": {"layers": [[8, 8, 8], [16]]}, "fixed": {"sizes": [3, 4]}}})
    assert run.exit_code == 0
    assert df["got_layers"].tolist() == [[8, 8, 8], [16]]
    assert df["got_sizes"].tolist() == [[3, 4], [3, 4]]


def test_type_bool_flag_gets_values_argparse_reads_correctly(tmp_path: Path) -> None:
    run, df = sweep(tmp_path, '''
        p = argparse.ArgumentParser()
        p.add_argument("--shuffle", type=bool, default=True)
        p.add_argument("--norm", type=lambda s: s.lower() in ("true", "1"), choices=[True, False], default=False)
        args = p.parse_args()
    ''', {"params": {"list": [{"shuffle": False, "norm": True}, {"shuffle": True, "norm": False}]}})  # noqa: E501
    assert run.exit_code == 0
    assert df["got_shuffle"].tolist() == [False, True]
    assert df["got_norm"].tolist() == [True, False]


def test_bool_choices_without_a_converter_are_refused_before_running(tmp_path: Path) -> None:
    with pytest.raises(
        SpecError, match=r"params.flag: s.py's --flag has choices \[True, False\] but no type="
    ):
        sweep(tmp_path, '''
            p = argparse.ArgumentParser()
            p.add_argument("--flag", choices=[True, False], default=True)
            args = p.parse_args()
        ''', {"params": {"grid": {"flag": [True, False]}}})
    assert not (tmp_path / "store").exists()


SUBCOMMANDS = '''
    p = argparse.ArgumentParser()
    p.add_argument("--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--lr", type=float, default=0.1)
    e = sub.add_parser("eval")
    e.add_argument("--split", choices=["val", "test"], default="val")
    args = p.parse_args()
'''


def test_command_param_selects_the_subcommand_and_its_flags_follow_it(tmp_path: Path) -> None:
    run, df = sweep(tmp_path, SUBCOMMANDS, {"params": {"list": [
        {"command": "train", "lr": 0.5, "verbose": True}, {"command": "eval", "split": "test"}]}})
    assert run.exit_code == 0
    assert df["got_cmd"].tolist() == ["train", "eval"]
    assert df.loc[0, "got_lr"] == 0.5 and bool(df.loc[0, "got_verbose"]) is True
    assert df.loc[1, "got_split"] == "test"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"command": "tran"},
            r"params.cmd: 'tran' is not a subcommand of s.py; its subcommands: train, eval",
        ),
        (
            {"command": "eval", "lr": 1},
            r"params.lr: s.py does not accept --lr; it accepts: --verbose, --split, cmd",
        ),
        ({"command": "eval", "split": "dev"}, r"'dev' is not one of s.py's choices \['val', 'test'\]"),
        ({"lr": 1}, r"s.py has subcommands \(train, eval\); choose one with a `cmd:` param"),
    ],
)
def test_subcommand_params_are_checked_before_running(
    tmp_path: Path, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        sweep(tmp_path, SUBCOMMANDS, {"params": {"list": [params]}})


def test_init_lists_each_subcommands_flags(tmp_path: Path) -> None:
    from batchsweep.scripts.starter import starter_text

    (tmp_path / "s.py").write_text("import argparse\n" + textwrap.dedent(SUBCOMMANDS))
    text = starter_text(tmp_path / "s.py")
    assert 'cmd: ["train"]  # subcommands: train, eval' in text
    assert "    lr: [0.1]" in text and "    # split: [\"val\"]  # choices: ['val', 'test']" in text


def test_parse_known_args_script_gets_undeclared_params_too(tmp_path: Path) -> None:
    run, df = sweep(tmp_path, '''
        p = argparse.ArgumentParser()
        p.add_argument("--a", type=int)
        args, rest = p.parse_known_args()
        args.rest = rest
    ''', {"params": {"grid": {"a": [1], "extra": [2]}}})
    assert run.exit_code == 0
    assert df.loc[0, "got_a"] == 1 and df.loc[0, "got_rest"] == ["--extra", "2"]


def test_flag_defaults_from_the_environment_are_read_with_the_specs_env(tmp_path: Path) -> None:
    script = tmp_path / "envs.py"
    script.write_text("import argparse, os\np = argparse.ArgumentParser()\n"
                      "p.add_argument('--data', default=os.environ['DATA_DIR'])\np.parse_args()\n")
    assert read_flags(script).known is False  # KeyError without the spec's env
    flag = read_flags(script, env={"DATA_DIR": "/d"}).lookup("data")
    assert flag is not None and flag.default == "/d"


def test_single_dash_long_option_reaches_the_script(tmp_path: Path) -> None:
    run, df = sweep(tmp_path, '''
        p = argparse.ArgumentParser()
        p.add_argument("-nsteps", type=int, default=10)
        args = p.parse_args()
    ''', {"params": {"grid": {"nsteps": [5, -2]}}})
    assert run.exit_code == 0
    assert df["got_nsteps"].tolist() == [5, -2]


MUTEX = '''
    p = argparse.ArgumentParser()
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--adam", action="store_true")
    g.add_argument("--sgd", action="store_true")
    args = p.parse_args()
'''


@pytest.mark.parametrize(("fixed", "message"), [
    ({}, "s.py requires one of adam, sgd"),
    ({"adam": False}, "s.py requires one of adam, sgd"),
    ({"adam": True, "sgd": True}, "adam, sgd are mutually exclusive in s.py"),
])
def test_required_mutually_exclusive_group_is_checked_before_running(tmp_path: Path, fixed: dict[str, Any],
                                                                     message: str) -> None:
    with pytest.raises(SpecError, match=message):
        sweep(tmp_path, MUTEX, {"params": {"fixed": fixed, "grid": {"_n": [1]}}})


def test_yaml_text_numbers_become_the_declared_type(tmp_path: Path) -> None:
    spec_text = (
        "name: t\nscript: s.py\nmetrics: {stdout: last}\nparams: {grid: {lr: [1e-22, 0.1], n: [1e3]}}\n"
    )
    (tmp_path / "s.py").write_text("import argparse, json\np = argparse.ArgumentParser()\n"
                                   "p.add_argument('--lr', type=float)\np.add_argument('--n', type=float)\n"
                                   "print(json.dumps({'got': p.parse_args().lr}))\n")
    (tmp_path / "sweep.yaml").write_text(spec_text)
    assert yaml.safe_load(spec_text)["params"]["grid"]["lr"][0] == "1e-22"  # YAML 1.1 reads it as text
    run = runs.run(tmp_path / "sweep.yaml", store=tmp_path / "store", progress=False)
    df = run.results()
    assert df["lr"].tolist() == [1e-22, 0.1] and df["got"].tolist() == [1e-22, 0.1]
    assert df["lr"].dtype == "float64"


def test_unreadable_flags_are_said_in_one_line_with_the_scripts_error(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text("import argparse\nimport torchy_not_installed\n")
    (tmp_path / "sweep.yaml").write_text("name: t\nscript: s.py\nparams: {grid: {a: [1]}}\n")
    p = planning.plan(tmp_path / "sweep.yaml", check_engine=False)
    assert len(p.notes) == 1
    assert "could not read s.py's command line (it failed: ModuleNotFoundError: No module named " \
           "'torchy_not_installed')" in p.notes[0]


def test_a_relative_script_path_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rel.py").write_text(
        "import argparse\np = argparse.ArgumentParser()\np.add_argument('--a')\np.parse_args()\n"
    )
    monkeypatch.chdir(tmp_path)
    assert read_flags(Path("rel.py")).lookup("a") is not None


def test_a_parser_in_a_module_beside_the_script_is_read(tmp_path: Path) -> None:
    """The LandBench layout: main.py calls config.get_args(), whose parser has nargs lists and type=bool."""
    (tmp_path / "config.py").write_text(textwrap.dedent('''
        import argparse

        def get_args():
            parser = argparse.ArgumentParser()
            parser.add_argument('--selected_year', nargs='+', type=int, default=[1990, 2020])
            parser.add_argument('--normalize', type=bool, default=True)
            return vars(parser.parse_args())
    '''))
    (tmp_path / "main.py").write_text(
        "import json\nfrom config import get_args\nprint(json.dumps(get_args()))\n"
    )
    (tmp_path / "sweep.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "script": "main.py",
                "metrics": {"stdout": "last"},
                "params": {"grid": {"selected_year": [[2000, 2010]], "normalize": [False]}},
            }
        )
    )
    run = runs.run(tmp_path / "sweep.yaml", store=tmp_path / "store", progress=False)
    df = run.results()
    assert run.exit_code == 0, df["error"].tolist()
    assert (df.loc[0, "metric_selected_year"], bool(df.loc[0, "metric_normalize"])) == ([2000, 2010], False)


def test_a_process_the_scripts_imports_start_neither_holds_up_reading_its_flags_nor_outlives_it(
    tmp_path: Path,
) -> None:
    """A script whose import starts a helper (a server, a watcher) that keeps the stdout/stderr it inherited:
    its flags are read as soon as the script reaches its parser, and the helper does not stay behind."""
    import os
    import time

    marker = f"batchsweep-helper-{os.getpid()}-{time.monotonic_ns()}"
    (tmp_path / "starts_helper.py").write_text(textwrap.dedent(f"""
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "{marker}"])
    """))
    script = tmp_path / "train.py"
    script.write_text("import argparse\nimport starts_helper\n"
                      "p = argparse.ArgumentParser()\np.add_argument('--lr', type=float)\np.parse_args()\n")
    started = time.monotonic()
    flags = read_flags(script)
    assert flags.known and [f.dest for f in flags.flags] == ["lr"]
    assert time.monotonic() - started < 30, "waited for the helper's inherited stdout/stderr to close"
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    assert left == [], f"the helper outlived the flag reading: {left}"
