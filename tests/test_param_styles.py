"""Scripts that parse no command line (docs/design.md §2): params reach them as environment variables, as
their module-level values or in the params file they read, or the run is refused before anything starts; never
a run whose tasks all "succeed" with the script's own values. Each script here is written the way such scripts
are written (a homework configured by environment variables, an SVM exercise with module-level
hyperparameters, a training script that reads params.yaml, an optparse benchmark) and echoes what it saw,
which the results check."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchsweep.errors import SpecError
from batchsweep.runs import start as runs
from batchsweep.runs.run import Run


def write(tmp_path: Path, script: str, name: str = "s.py") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(script))
    return path


def sweep(tmp_path: Path, spec: dict[str, Any], **extra: Any) -> tuple[Run, Any]:
    path = tmp_path / "sweep.yaml"
    path.write_text(
        yaml.safe_dump({"name": "k", "script": "s.py", "metrics": {"stdout": "last"}, **spec, **extra})
    )
    run = runs.run(path, store=tmp_path / "store", progress=False)
    return run, run.results()


def seen(df: Any, *columns: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in df[list(columns)].itertuples(index=False)]


# -- environment variables ------------------------------------------------------------------------------
PERCEPTRON = '''
import json
from os import environ

# the defaults; each is overridden by the environment variable of its name in capitals
learningrate = 0.1
epoch = 100
bias = -0.5

LEARNINGRATE = float(environ.get("LEARNINGRATE", learningrate))
EPOCH = int(environ.get("EPOCH", epoch))
BIAS = float(environ.get("BIAS", bias))

OR_GATE = [(0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 1)]
weights = [0.0, 0.0]
for _ in range(EPOCH):
    mistakes = 0
    for a, b, target in OR_GATE:
        step = LEARNINGRATE * (target - (weights[0] * a + weights[1] * b + BIAS > 0))
        weights = [weights[0] + step * a, weights[1] + step * b]
        mistakes += step != 0
seen = {"lr_seen": LEARNINGRATE, "epoch_seen": EPOCH, "errors": mistakes, "tag": environ.get("TAG")}
print(json.dumps(seen))
'''


@pytest.mark.parametrize("warm", [False, True])
def test_script_configured_by_environment_variables_gets_each_tasks_params(
    tmp_path: Path, warm: bool
) -> None:
    write(tmp_path, PERCEPTRON)
    run, df = sweep(tmp_path, {"params": {"grid": {"LEARNINGRATE": [0.01, 0.5], "EPOCH": [1, 3]}}},
                    env={"TAG": "lr={LEARNINGRATE}"}, warm=warm)
    assert run.exit_code == 0
    assert sorted(seen(df, "LEARNINGRATE", "EPOCH", "lr_seen", "epoch_seen", "tag")) == [
        (0.01, 1, 0.01, 1, "lr=0.01"), (0.01, 3, 0.01, 3, "lr=0.01"),
        (0.5, 1, 0.5, 1, "lr=0.5"), (0.5, 3, 0.5, 3, "lr=0.5")]


def test_env_style_upper_cases_lower_case_params_and_checks_names_and_types(tmp_path: Path) -> None:
    write(tmp_path, PERCEPTRON)
    run, df = sweep(tmp_path, {"params": {"grid": {"learningrate": [0.2, 0.3]}}}, args={"style": "env"})
    assert sorted(df["lr_seen"]) == [0.2, 0.3]
    with pytest.raises(SpecError, match=r"params.learning_rate: s.py reads no environment variable "
                                        r"'learning_rate'; it reads: .*LEARNINGRATE"):
        sweep(tmp_path, {"params": {"grid": {"learning_rate": [0.2]}}}, args={"style": "env"})
    with pytest.raises(SpecError, match=r"params.EPOCH: 'many' does not fit EPOCH"):
        sweep(tmp_path, {"params": {"grid": {"EPOCH": ["many"]}}})


# -- module-level values ----------------------------------------------------------------------------------
IRIS = '''
"""SVM exercise: one kernel per run, the hyperparameters as module variables."""
import json
import random

# Hyperparameters
kernel = "rbf"      # one of linear, poly, rbf
test_split = 0.2
random_seed = 0
degree: int = 3
gamma = 10

random.seed(random_seed)
n_test = int(150 * test_split)
score = {"linear": 0.9, "poly": 0.8, "rbf": 0.7}[kernel] + 0.01 * degree - 0.001 * gamma
print("Train accuracy: %.3f" % score)
print(json.dumps({"kernel_seen": kernel, "degree_seen": degree, "gamma_seen": gamma, "n_test": n_test}))
'''


@pytest.mark.parametrize("warm", [False, True])
def test_module_level_values_are_replaced_per_task_without_editing_the_script(
    tmp_path: Path, warm: bool
) -> None:
    script = write(tmp_path, IRIS)
    before = script.read_text()
    run, df = sweep(tmp_path, {"params": {"grid": {"kernel": ["linear", "poly"], "degree": [2, 4]},
                                          "fixed": {"gamma": 0.5}}}, warm=warm)
    assert run.exit_code == 0
    assert sorted(seen(df, "kernel", "degree", "kernel_seen", "degree_seen", "gamma_seen")) == [
        ("linear", 2, "linear", 2, 0.5), ("linear", 4, "linear", 4, 0.5),
        ("poly", 2, "poly", 2, 0.5), ("poly", 4, "poly", 4, 0.5)]
    assert set(df["n_test"]) == {30}  # what the script computes from values not swept is its own
    assert script.read_text() == before


def test_the_shown_command_of_a_globals_task_runs_it_as_the_task_ran(tmp_path: Path) -> None:
    write(tmp_path, IRIS)
    run, df = sweep(tmp_path, {"params": {"grid": {"kernel": ["poly"]}}})
    command = run.statuses()[0].command
    assert command == "python -m batchsweep.task._globalsrun s.py 'kernel=\"poly\"'"
    import shlex

    done = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=tmp_path, capture_output=True,
                          text=True, check=True)
    assert json.loads(done.stdout.splitlines()[-1])["kernel_seen"] == "poly"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"kernal": ["poly"]},
            r"params.kernal: s.py has no module-level value 'kernal'; its module-level values: "
            r"kernel, test_split, random_seed, degree, gamma",
        ),
        (
            {"degree": [2.5]},
            r"params.degree: 2.5 does not fit s.py's module-level degree, which is 3 \(int\); give an int",
        ),
        ({"gamma": ["high"]}, r"params.gamma: 'high' does not fit s.py's module-level gamma, which is 10"),
        ({"kernel": [["rbf"]]}, r"params.kernel: \['rbf'\] is a list but s.py's module-level kernel is text"),
    ],
)
def test_globals_are_checked_before_running(tmp_path: Path, params: dict[str, Any], message: str) -> None:
    write(tmp_path, IRIS)
    with pytest.raises(SpecError, match=message):
        sweep(tmp_path, {"params": {"grid": params}}, args={"style": "globals"})
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("run.json"))


# -- a params file ------------------------------------------------------------------------------------------
TRAIN_YAML = '''
import json
import yaml

with open("params.yaml") as f:
    params = yaml.safe_load(f)

lr = params["train"]["lr"]
layers = params["model"]["layers"]
print(json.dumps({"lr_seen": lr, "layers_seen": layers, "activation_seen": params["model"]["activation"],
                  "loss": 1.0 / (1 + lr * 10) + 0.01 * layers}))
'''


@pytest.mark.parametrize("suffix", ["yaml", "json", "toml"])
def test_params_are_written_to_the_file_the_script_reads_merged_over_its_template(tmp_path: Path,
                                                                                  suffix: str) -> None:
    loader = {"yaml": "yaml.safe_load(f)", "json": "json.load(f)", "toml": "tomllib.loads(f.read())"}[suffix]
    write(tmp_path, TRAIN_YAML.replace("params.yaml", f"params.{suffix}").replace("yaml.safe_load(f)", loader)
          .replace("import yaml", "import yaml, tomllib"))
    template = {"model": {"layers": 2, "activation": "relu"}, "train": {"lr": 0.01, "epochs": 5}}
    (tmp_path / "defaults").mkdir()
    if suffix == "toml":
        text = '[model]\nlayers = 2\nactivation = "relu"\n\n[train]\nlr = 0.01\nepochs = 5\n'
    else:
        text = yaml.safe_dump(template) if suffix == "yaml" else json.dumps(template)
    (tmp_path / "defaults" / f"base.{suffix}").write_text(text)
    run, df = sweep(
        tmp_path,
        {"params": {"grid": {"train.lr": [0.1, 0.2], "model.layers": [1, 3]}}},
        args={"style": "config", "file": f"params.{suffix}", "template": f"defaults/base.{suffix}"},
    )
    assert run.exit_code == 0
    assert sorted(seen(df, "train.lr", "model.layers", "lr_seen", "layers_seen", "activation_seen")) == [
        (0.1, 1, 0.1, 1, "relu"),
        (0.1, 3, 0.1, 3, "relu"),
        (0.2, 1, 0.2, 1, "relu"),
        (0.2, 3, 0.2, 3, "relu"),
    ]


def test_a_params_file_beside_the_script_is_found_and_its_keys_checked(tmp_path: Path) -> None:
    write(tmp_path, TRAIN_YAML)
    (tmp_path / "params.yaml").write_text("model:\n  layers: 2\n  activation: relu\ntrain:\n  lr: 0.01\n")
    run, df = sweep(tmp_path, {"params": {"grid": {"train.lr": [0.5, 0.7]}}})  # detected: keys of params.yaml
    assert sorted(seen(df, "lr_seen", "layers_seen")) == [(0.5, 2), (0.7, 2)]
    # the user's file unchanged
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["train"]["lr"] == 0.01
    with pytest.raises(
        SpecError,
        match=r"params.train.rate: s.py's params.yaml template has no key 'train.rate'; "
        r"its keys: model, model.layers",
    ):
        sweep(tmp_path, {"params": {"grid": {"train.rate": [0.5]}}}, args={"style": "config"})


def test_a_params_file_where_the_script_is_run_from_is_its_template_as_in_a_dvc_repository(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A DVC stage (`python stages/train.py`, run from the repository's root) reads the params.yaml at the
    root: init and the run found params files beside the script only, and init said the script 'reads no
    params file'."""
    from batchsweep import cli

    monkeypatch.chdir(tmp_path)
    write(tmp_path, TRAIN_YAML, "stages/train.py")
    (tmp_path / "params.yaml").write_text("model:\n  layers: 2\n  activation: relu\ntrain:\n  lr: 0.01\n")
    # the spec at the root, beside params.yaml
    assert cli.main(["init", "stages/train.py", "-o", "sweep.yaml"]) == 0
    spec = yaml.safe_load((tmp_path / "sweep.yaml").read_text())
    assert spec["args"] == {"style": "config", "file": "params.yaml", "template": "params.yaml"}
    # beside the script, run from the root: the template is found
    assert cli.main(["init", "stages/train.py"]) == 0
    assert (
        yaml.safe_load((tmp_path / "stages" / "sweep.yaml").read_text())["args"]["template"]
        == "../params.yaml"
    )
    del spec["args"]  # detected too: the params are keys of the params.yaml where the spec is
    spec["params"]["grid"]["train.lr"] = [0.3, 0.6]
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(spec))
    run = runs.run(tmp_path / "sweep.yaml", store=tmp_path / "store", progress=False)
    assert run.exit_code == 0
    assert sorted(seen(run.results(), "lr_seen", "layers_seen", "activation_seen")) == [(0.3, 2, "relu"),
                                                                                       (0.6, 2, "relu")]


def test_init_on_a_script_whose_params_file_is_nowhere_writes_the_config_style(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from batchsweep import cli

    monkeypatch.chdir(tmp_path)
    write(tmp_path, TRAIN_YAML, "stages/train.py")
    assert cli.main(["init", "stages/train.py", "-o", "sweep.yaml"]) == 0
    text = (tmp_path / "sweep.yaml").read_text()
    assert yaml.safe_load(text)["args"] == {"style": "config", "file": "params.yaml"}
    assert "params.yaml was not found beside the script or in the current directory" in text


# -- refused: nothing would reach the script
# ------------------------------------------------------------------
def test_a_script_that_reads_no_params_is_refused_with_the_styles_that_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from batchsweep import cli

    write(tmp_path, IRIS)
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(
        {"name": "k", "script": "s.py", "params": {"grid": {"kernel_type": ["linear", "rbf"]}}}))
    assert cli.main(["run", str(tmp_path / "sweep.yaml"), "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: params: s.py parses no command line, so kernel_type would never reach it; use "
        "`args: {style: globals}` (module-level values: kernel, test_split, random_seed, degree, gamma)"
    )
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("run.json"))


def test_a_script_with_no_way_in_is_refused_and_one_reading_sys_argv_is_not(tmp_path: Path) -> None:
    write(tmp_path, "import json\nprint(json.dumps({'x': 1}))\n")
    with pytest.raises(
        SpecError,
        match=r"s.py parses no command line, so lr would never reach it; make it read "
        r"them .*or set `args: \{style: plain\}`",
    ):
        sweep(tmp_path, {"params": {"grid": {"lr": [1, 2]}}})
    run, df = sweep(tmp_path, {"params": {"grid": {"_lr": [1, 2]}, "repeat": 2}})  # batchsweep's own: fine
    assert run.exit_code == 0 and len(df) == 4
    write(tmp_path, "import json, sys\nprint(json.dumps({'argv': sys.argv[1:]}))\n")
    run, df = sweep(tmp_path, {"params": {"grid": {"lr": [1, 2]}}})
    assert sorted(map(tuple, df["argv"])) == [("--lr", "1"), ("--lr", "2")]


POSITIONAL = """\
import json, sys
alpha = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
n = int(sys.argv[2]) if len(sys.argv) > 2 else 3
tag = sys.argv[3] if len(sys.argv) > 3 else "untagged"
print(json.dumps({"alpha_seen": alpha, "n_seen": n, "tag_seen": tag, "argv": sys.argv[1:]}))
"""


def test_a_script_reading_sys_argv_by_position_gets_each_param_at_its_position(tmp_path: Path) -> None:
    write(tmp_path, POSITIONAL)
    run, df = sweep(tmp_path, {"params": {"grid": {"n": [4, 5]}, "fixed": {"alpha": 0.1}}})
    assert run.exit_code == 0
    # tag after n is left out (its default stays), alpha before it sits at position 1
    assert sorted(map(tuple, df["argv"])) == [("0.1", "4"), ("0.1", "5")]
    assert sorted(df["n_seen"]) == [4, 5] and set(df["tag_seen"]) == {"untagged"}
    run, df = sweep(tmp_path, {"params": {"grid": {"tag": ["a", "b"]}}})
    # the defaults written out
    assert sorted(map(tuple, df["argv"])) == [("0.5", "3", "a"), ("0.5", "3", "b")]
    with pytest.raises(SpecError, match=r"s.py reads its params by position \(alpha = sys.argv\[1\], n = "
                       r"sys.argv\[2\], tag = sys.argv\[3\]\), so lr would never reach it; name the params"):
        sweep(tmp_path, {"params": {"grid": {"lr": [1, 2]}}})
    # a tuple assignment, with no defaults: every position before a given one must be given
    write(tmp_path, "import json, sys\nlr, n = float(sys.argv[1]), int(sys.argv[2])\n"
                    "print(json.dumps({'lr_seen': lr, 'n_seen': n}))\n")
    with pytest.raises(SpecError, match=r"params.n: s.py reads it after lr \(sys.argv position 1\), which "
                       "has no default"):
        sweep(tmp_path, {"params": {"grid": {"n": [1, 2]}}})
    run, df = sweep(tmp_path, {"params": {"grid": {"n": [1, 2]}, "fixed": {"lr": 0.5}}})
    assert sorted(seen(df, "lr_seen", "n_seen")) == [(0.5, 1), (0.5, 2)]
    # params named after the environment variables it reads still go there: its sys.argv[1] is a path
    write(tmp_path, "import json, os, sys\nout = sys.argv[1] if len(sys.argv) > 1 else 'out'\n"
                    "print(json.dumps({'lr_seen': float(os.environ.get('LR', 0.1)), 'out_seen': out}))\n")
    run, df = sweep(tmp_path, {"params": {"grid": {"LR": [0.5, 0.25]}}})
    assert sorted(seen(df, "lr_seen", "out_seen")) == [(0.25, "out"), (0.5, "out")]
    write(tmp_path, POSITIONAL)
    with pytest.raises(SpecError, match=r"params.n: 'many' is not a number, but s.py reads its sys.argv "
                       r"position as int"):
        sweep(tmp_path, {"params": {"grid": {"n": ["many"]}}})


def test_positions_read_through_a_name_given_to_sys_argv_go_by_position(tmp_path: Path) -> None:
    # MLflow-style scripts often name their argv first: `args = sys.argv` or `args = sys.argv[1:]`
    write(tmp_path, "import json, sys\nargs = sys.argv\n"
                    "alpha = float(args[1]) if len(args) > 1 else 0.5\n"
                    "l1 = float(args[2]) if len(args) > 2 else 0.5\n"
                    "print(json.dumps({'alpha_seen': alpha, 'l1_seen': l1, 'argv': sys.argv[1:]}))\n")
    run, df = sweep(tmp_path, {"params": {"grid": {"l1": [0.1, 0.2]}}})
    assert sorted(map(tuple, df["argv"])) == [("0.5", "0.1"), ("0.5", "0.2")]
    assert sorted(seen(df, "alpha_seen", "l1_seen")) == [(0.5, 0.1), (0.5, 0.2)]
    write(tmp_path, "import json, sys\nrest = sys.argv[1:]\n"
                    "alpha = float(rest[0]) if rest else 0.5\n"
                    "print(json.dumps({'alpha_seen': alpha, 'argv': sys.argv[1:]}))\n")
    run, df = sweep(tmp_path, {"params": {"grid": {"alpha": [0.1, 0.2]}}})
    assert sorted(map(tuple, df["argv"])) == [("0.1",), ("0.2",)]
    with pytest.raises(SpecError, match=r"reads its params by position \(alpha = sys.argv\[1\]\), so lr "):
        sweep(tmp_path, {"params": {"grid": {"lr": [1, 2]}}})


# -- optparse ------------------------------------------------------------------------------------------------
BENCH = '''
"""Benchmark with optparse options, run once per setting."""
import json
import sys
from optparse import OptionParser

op = OptionParser(usage="%prog [options]")
op.add_option("--n-components", dest="n_components", type="int", default=10,
              help="number of components to keep")
op.add_option("--solver", dest="solver", type="choice", choices=["full", "randomized"], default="full")
op.add_option("--whiten", action="store_true", dest="whiten", default=False)
op.add_option("-t", "--tol", dest="tol", type="float", default=0.0)

(opts, args) = op.parse_args()
if args:
    op.error("this script takes no arguments.")
print(json.dumps({"n_seen": opts.n_components, "solver_seen": opts.solver, "whiten_seen": opts.whiten,
                  "tol_seen": opts.tol}))
'''


def test_optparse_options_are_read_checked_and_passed(tmp_path: Path) -> None:
    write(tmp_path, BENCH)
    run, df = sweep(tmp_path, {"params": {"grid": {"n_components": [5, 20], "whiten": [True, False]},
                                          "fixed": {"solver": "randomized", "tol": -0.5}}})
    assert run.exit_code == 0
    assert sorted(seen(df, "n_seen", "whiten_seen", "solver_seen", "tol_seen")) == [
        (5, False, "randomized", -0.5), (5, True, "randomized", -0.5),
        (20, False, "randomized", -0.5), (20, True, "randomized", -0.5)]
    with pytest.raises(SpecError, match=r"params.n_comp: s.py does not accept --n_comp; it accepts: "
                                        r"--n-components, --solver, --whiten, --tol"):
        sweep(tmp_path, {"params": {"grid": {"n_comp": [5]}}})
    with pytest.raises(SpecError, match=r"params.solver: 'arpack' is not one of s.py's choices"):
        sweep(tmp_path, {"params": {"grid": {"solver": ["arpack"]}}})
    with pytest.raises(SpecError, match=r"params.n_components: 'five' is not a valid int"):
        sweep(tmp_path, {"params": {"grid": {"n_components": ["five"]}}})


# -- a parser that lives elsewhere ---------------------------------------------------------------------------
WINE_TRAIN = '''
import json
import click


@click.command(help="Trains an ElasticNet-like model on the wine data")
@click.option("--max-depth", type=int, default=3)
@click.option("--alpha", type=float, default=0.5)
@click.option("--l1-ratio", type=float, default=0.1)
def train(max_depth, alpha, l1_ratio):
    rmse = 1.0 - 0.1 * max_depth + alpha * l1_ratio
    print(json.dumps({"max_depth_seen": max_depth, "alpha_seen": alpha, "rmse": rmse}))
'''
MAIN_TRAIN = '''
import sys

from wine_quality.train import train

if __name__ == "__main__":
    train(sys.argv[1:])
'''


def test_a_click_command_in_a_src_layout_package_is_read_with_the_specs_pythonpath(tmp_path: Path) -> None:
    write(tmp_path, MAIN_TRAIN, "main_train.py")
    write(tmp_path, "", "src/wine_quality/__init__.py")
    write(tmp_path, WINE_TRAIN, "src/wine_quality/train.py")
    run, df = sweep(tmp_path, {"params": {"grid": {"max_depth": [2, 4], "alpha": [0.1]}}},
                    script="main_train.py", env={"PYTHONPATH": "src"})
    assert run.exit_code == 0
    assert sorted(seen(df, "max_depth_seen", "alpha_seen")) == [(2, 0.1), (4, 0.1)]
    assert sorted(s.command for s in run.statuses().values()) == [
        "python main_train.py --alpha 0.1 --max-depth 2",
        "python main_train.py --alpha 0.1 --max-depth 4",
    ]
    with pytest.raises(SpecError, match=r"params.depth: main_train.py does not accept --depth; it accepts: "
                                        r"--max-depth, --alpha, --l1-ratio"):
        sweep(
            tmp_path, {"params": {"grid": {"depth": [2]}}}, script="main_train.py", env={"PYTHONPATH": "src"}
        )


def test_the_shown_command_names_the_env_values_each_task_gets_its_own_of(tmp_path: Path) -> None:
    """`env: {TAG: "run-{EPOCH}"}` gives each task its own TAG; --dry-run and status showed `EPOCH=3 python
    s.py` without it, so the shown command did not run the task as it ran."""
    write(tmp_path, PERCEPTRON)
    run, df = sweep(
        tmp_path, {"params": {"grid": {"EPOCH": [3]}}}, env={"TAG": "run-{EPOCH}", "PLAIN": "same"}
    )
    assert list(df["tag"]) == ["run-3"]
    assert run.statuses()[0].command == "TAG=run-3 EPOCH=3 python s.py"


def test_env_placeholders_must_name_a_param(tmp_path: Path) -> None:
    write(tmp_path, PERCEPTRON)
    with pytest.raises(SpecError, match=r"env.TAG: placeholder \{lr\} names no param; params are: EPOCH"):
        sweep(tmp_path, {"params": {"grid": {"EPOCH": [1]}}}, env={"TAG": "run-{lr}", "HOME_DIR": "${HOME}"})


# -- a Hydra app with config groups that logs to a file
# ---------------------------------------------------------
HYDRA_TRAIN = '''
import json
import logging
import os

import hydra
from omegaconf import DictConfig

log = logging.getLogger(__name__)


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    log.info("training %s with lr=%s", cfg.model.name, cfg.lr)
    with open(os.path.join(cfg.out_dir, "model.txt"), "w") as f:  # the run dir Hydra made for it by hand
        f.write(cfg.model.name)
    print(json.dumps({"model_seen": cfg.model.name, "lr_seen": cfg.lr}))
    return cfg.model.base + cfg.lr * 10


if __name__ == "__main__":
    main()
'''
HYDRA_CONFIG = '''
defaults:
  - model: rf
  - _self_
name: baseline
lr: 0.1
out_dir: outputs/${name}
hydra:
  run:
    dir: outputs/${name}
  job:
    chdir: false
  job_logging:  # Hydra's default logging, its file handler writing train.log in the run dir
    handlers:
      file:
        filename: ${hydra.run.dir}/train.log
'''


def test_a_hydra_app_with_groups_and_file_logging_runs_each_task_in_its_own_run_dir(tmp_path: Path) -> None:
    write(tmp_path, HYDRA_TRAIN)
    write(tmp_path, HYDRA_CONFIG, "conf/config.yaml")
    write(tmp_path, "name: rf\nbase: 0.5\n", "conf/model/rf.yaml")
    write(tmp_path, "name: svm\nbase: 0.25\n", "conf/model/svm.yaml")
    run, df = sweep(tmp_path, {"params": {"grid": {"model": ["rf", "svm"], "lr": [0.1, 0.2]}}})
    assert run.exit_code == 0, list(df["error"])
    assert sorted(seen(df, "model", "lr", "model_seen", "lr_seen", "value")) == [
        ("rf", 0.1, "rf", 0.1, 1.5), ("rf", 0.2, "rf", 0.2, 2.5),
        ("svm", 0.1, "svm", 0.1, 1.25), ("svm", 0.2, "svm", 0.2, 2.25)]
    for task in range(4):
        outputs = tmp_path / "store" / "runs" / run.id / "tasks" / str(task) / "outputs"
        model = df.loc[task, "model"]
        assert f"training {model} with lr=" in (outputs / "train.log").read_text()  # its log, in its run dir
        assert (outputs / ".hydra" / "overrides.yaml").exists()
        assert (outputs / "outputs" / "baseline" / "model.txt").read_text() == model
    assert not (tmp_path / "outputs").exists()  # nothing written beside the app, by the reading or the tasks


# A Hydra app whose config is a structured schema (dataclasses in the ConfigStore), written as such apps are:
# a Path and an Enum field in its config groups, a bool at the top.
HYDRA_SCHEMA = '''
from dataclasses import dataclass
from enum import Enum, auto
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


class Kern(Enum):
    linear = auto()
    RBF = auto()


@dataclass
class ModelConfig:
    pass


@dataclass
class SVMConfig(ModelConfig):
    kernel: Kern = Kern.RBF
    C: float = 1.0


@dataclass
class MlpConfig(ModelConfig):
    layers: int = 3


@dataclass
class DataConfig:
    dir: Path = Path("../data")


@dataclass
class Config:
    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    seed: int = 42
    data_pcnt: float = 1.0
    use_wandb: bool = False


cs = ConfigStore.instance()
cs.store(name="primary_schema", node=Config)
cs.store(name="svm", node=SVMConfig, group="model")
cs.store(name="mlp", node=MlpConfig, group="model")
cs.store(name="adult", node=DataConfig, group="data")


@hydra.main(config_path="conf", config_name="primary", version_base="1.3")
def my_app(hydra_cfg: DictConfig) -> None:
    cfg = OmegaConf.to_object(hydra_cfg)
    print(f"using {type(cfg.model).__name__} on {cfg.data.dir}")
    print(f"{cfg.seed=} {cfg.use_wandb=}")
    return {"seed_seen": cfg.seed, "wandb_seen": cfg.use_wandb, "model_seen": type(cfg.model).__name__}


if __name__ == "__main__":
    my_app()
'''


def test_a_hydra_app_with_a_structured_schema_gets_its_defaults_in_the_starter_and_booleans_passed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Path or Enum anywhere in the composed config made the whole config unreadable as JSON: every key's
    default was read as null (the starter wrote `seed: [null]`, and its run failed every task on `seed=null`);
    a boolean key was refused as if it were argparse's type=bool."""
    from batchsweep import cli

    monkeypatch.chdir(tmp_path)
    write(tmp_path, HYDRA_SCHEMA)
    write(tmp_path, "defaults:\n  - primary_schema\n  - model: svm\n  - data: adult\n", "conf/primary.yaml")
    assert cli.main(["init", "s.py"]) == 0
    spec = yaml.safe_load((tmp_path / "sweep.yaml").read_text())
    assert spec["params"]["grid"] == {"data": ["adult"], "model": ["svm"], "seed": [42], "data_pcnt": [1.0],
                                      "use_wandb": [False]}
    spec["params"]["grid"].update(model=["svm", "mlp"], use_wandb=[False, True])
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(spec))
    run = runs.run(tmp_path / "sweep.yaml", store=tmp_path / "store", progress=False)
    df = run.results()
    assert run.exit_code == 0, list(df["error"])
    assert sorted(seen(df, "model", "use_wandb", "model_seen", "wandb_seen", "seed_seen")) == [
        ("mlp", False, "MlpConfig", False, 42), ("mlp", True, "MlpConfig", True, 42),
        ("svm", False, "SVMConfig", False, 42), ("svm", True, "SVMConfig", True, 42)]


# -- a sweep whose params had no effect
# -----------------------------------------------------------------------------
@pytest.mark.parametrize("compacted", [False, True])
def test_a_sweep_whose_metrics_are_all_identical_is_flagged_in_outcome_status_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, compacted: bool
) -> None:
    from batchsweep import cli
    from batchsweep.store import compact

    if compacted:  # the run packs its statuses and metrics at the end, as a big run does
        monkeypatch.setattr(compact, "AUTO_COMPACT_TASKS", 2)

    write(
        tmp_path,
        "import json, sys\nargs = sys.argv[1:]  # read, never used\nprint(json.dumps({'acc': 0.9}))\n",
    )
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump({"name": "k", "script": "s.py", "metrics": {"stdout": "last"},
                                    "params": {"grid": {"lr": [0.1, 0.2], "depth": [1, 2]}}}))
    store = str(tmp_path / "store")
    assert cli.main(["run", str(spec), "--store", store]) == 0
    line = "all 4 succeeded tasks gave identical metrics: do the params reach the script?"
    assert line in capsys.readouterr().err.splitlines()
    assert bool(list((tmp_path / "store").rglob("packs/*.jsonl"))) is compacted
    assert cli.main(["status", "--store", store]) == 0  # the latest run
    assert f"metrics  {line}" in capsys.readouterr().out
    assert cli.main(["report", "--store", store, "-o", str(tmp_path / "r.html")]) == 0
    assert line in (tmp_path / "r.html").read_text()


def test_repeats_of_one_param_set_or_metrics_that_differ_are_not_flagged(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from batchsweep import cli

    write(tmp_path, "import json, sys\nprint(json.dumps({'acc': 0.9, 'argv': sys.argv[1:]}))\n")
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump({"name": "k", "script": "s.py", "metrics": {"stdout": "last"},
                                    "params": {"grid": {"lr": [0.1, 0.2]}}}))
    assert cli.main(["run", str(spec), "--store", str(tmp_path / "store")]) == 0
    assert "identical metrics" not in capsys.readouterr().err
    write(tmp_path, "import json, sys\nprint(json.dumps({'acc': 0.9, 'n': len(sys.argv)}))\n")
    spec.write_text(yaml.safe_dump({"name": "k", "script": "s.py", "metrics": {"stdout": "last"},
                                    "params": {"fixed": {"lr": 0.1}, "repeat": 3}}))
    assert cli.main(["run", str(spec), "--store", str(tmp_path / "store")]) == 0
    assert "identical metrics" not in capsys.readouterr().err


# -- init writes the spec such a script needs
# ------------------------------------------------------------------------
@pytest.mark.parametrize(("script", "style", "param", "values", "column"), [
    (PERCEPTRON, "env", "LEARNINGRATE", [0.2, 0.4], "lr_seen"),
    (IRIS, "globals", "kernel", ["linear", "poly"], "kernel_seen"),
    (TRAIN_YAML, "config", "train.lr", [0.3, 0.6], "lr_seen"),
])
def test_init_writes_the_detected_style_and_the_rule_for_what_it_prints(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    script: str,
    style: str,
    param: str,
    values: list[Any],
    column: str,
) -> None:
    from batchsweep import cli

    monkeypatch.chdir(tmp_path)
    write(tmp_path, script)
    (tmp_path / "params.yaml").write_text("model:\n  layers: 2\n  activation: relu\ntrain:\n  lr: 0.01\n")
    assert cli.main(["init", "s.py"]) == 0
    spec = yaml.safe_load((tmp_path / "sweep.yaml").read_text())
    assert spec["args"]["style"] == style
    assert spec["metrics"] == {"stdout": "last"}
    spec["params"]["grid"][param] = values  # what a user does next: sweep one of them
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(spec))
    run = runs.run(tmp_path / "sweep.yaml", store=tmp_path / "store", progress=False)
    assert run.exit_code == 0
    assert sorted(run.results()[column]) == values


def test_init_puts_a_variable_read_without_default_under_fixed_and_leaves_an_optional_one_unset(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`int(os.environ["EPOCHS"])` was written as `EPOCHS: [""]` in the grid (every task then failed at
    int("")), and `os.environ.get("TAG")` as `TAG: [""]`, which sets the variable the script tests for being
    unset."""
    from batchsweep import cli

    monkeypatch.chdir(tmp_path)
    write(tmp_path, """
        import json, os
        epochs = int(os.environ["EPOCHS"])
        lr = float(os.getenv("LR", 0.01))
        print(json.dumps({"epochs_seen": epochs, "lr_seen": lr, "tag_set": "TAG" in os.environ}))
        tag = os.environ.get("TAG")
        """)
    assert cli.main(["init", "s.py"]) == 0
    text = (tmp_path / "sweep.yaml").read_text()
    spec = yaml.safe_load(text)
    assert spec["params"] == {"grid": {"LR": [0.01]}, "fixed": {"EPOCHS": "CHANGE_ME"}}
    assert '# TAG: [""]  # read without a default' in text
    with pytest.raises(SpecError, match="params.EPOCHS: still CHANGE_ME"):
        runs.run(tmp_path / "sweep.yaml", store=tmp_path / "store", progress=False)
    spec["params"]["fixed"]["EPOCHS"] = 5
    spec["params"]["grid"]["LR"] = [0.01, 0.1]
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(spec))
    run = runs.run(tmp_path / "sweep.yaml", store=tmp_path / "store", progress=False)
    assert sorted(seen(run.results(), "epochs_seen", "lr_seen", "tag_set")) == [
        (5, 0.01, False),
        (5, 0.1, False),
    ]


def test_a_default_given_by_keyword_is_the_variables_default(tmp_path: Path) -> None:
    """`environ.get('EPOCHS', default=200)` (a public RL agent's constants) was read as no default: init
    commented every variable out as `EPOCHS: [""]  # read without a default` and no type was checked."""
    from batchsweep.scripts.starter import write_starter

    write(tmp_path, """
        from os import environ
        import json
        EPOCHS = environ.get('EPOCHS', default=200)
        LEARNING_RATE = environ.get('LEARNING_RATE', default=1e-4)
        print(json.dumps({"epochs_seen": int(EPOCHS), "lr_seen": float(LEARNING_RATE)}))
        """)
    starter = yaml.safe_load(write_starter(str(tmp_path / "s.py")).read_text())
    assert starter["params"] == {"grid": {"EPOCHS": [200], "LEARNING_RATE": [0.0001]}}
    with pytest.raises(SpecError, match=r"params.EPOCHS: 'many' does not fit EPOCHS \(read by s.py with a "
                       r"default of 200\)"):
        sweep(tmp_path, {"params": {"grid": {"EPOCHS": ["many"]}}})
    run, df = sweep(tmp_path, {"params": {"grid": {"EPOCHS": [1, 2]}}})
    assert sorted(seen(df, "epochs_seen", "lr_seen")) == [(1, 0.0001), (2, 0.0001)]


def test_init_leaves_out_module_level_values_a_param_could_never_set(tmp_path: Path) -> None:
    """Guild's flags/globals.py has `_prefix = "Flags:"`: the starter listed `_prefix` in the grid, but a
    param named `_...` is a placeholder that never reaches the script, so sweeping it changed nothing."""
    from batchsweep.scripts.starter import starter_text

    script = write(tmp_path, """
        from __future__ import print_function

        i = 1
        f = 1.1
        b = False
        s = "hello"
        l = [1, 2, "foo"]

        _prefix = "Flags:"

        print(_prefix, i, f, b, s)
        """)
    spec = yaml.safe_load(starter_text(script))
    assert spec["args"] == {"style": "globals"}
    assert spec["params"]["grid"] == {
        "i": [1],
        "f": [1.1],
        "b": [False],
        "s": ["hello"],
        "l": [[1, 2, "foo"]],
    }


def test_init_reads_a_src_layout_package_with_pythonpath_src(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchsweep import cli

    monkeypatch.chdir(tmp_path)
    write(tmp_path, MAIN_TRAIN, "main_train.py")
    write(tmp_path, "", "src/wine_quality/__init__.py")
    write(tmp_path, WINE_TRAIN, "src/wine_quality/train.py")
    assert cli.main(["init", "main_train.py"]) == 0
    spec = yaml.safe_load((tmp_path / "sweep.yaml").read_text())
    assert spec["env"] == {"PYTHONPATH": "src"}
    assert spec["params"]["grid"] == {"max_depth": [3], "alpha": [0.5], "l1_ratio": [0.1]}
    run = runs.run(tmp_path / "sweep.yaml", store=tmp_path / "store", progress=False)
    assert run.exit_code == 0 and list(run.results()["max_depth_seen"]) == [3]


@pytest.mark.parametrize(
    "imports", ["from absl import app, flags", "from docopt import docopt", "import tyro"]
)
def test_a_script_whose_command_line_library_batchsweep_does_not_read_still_gets_name_value(
        tmp_path: Path, imports: str) -> None:
    from batchsweep.planning.plan import plan

    write(tmp_path, f"{imports}\nimport json\nprint(json.dumps({{'x': 1}}))\n")
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(
        {"name": "k", "script": "s.py", "params": {"grid": {"lr": [0.1, 0.2]}}}))
    p = plan(tmp_path / "sweep.yaml")  # not refused: the library reads sys.argv itself
    assert len(p.tasks) == 2


def test_environment_variables_read_in_a_module_beside_the_script_are_found(tmp_path: Path) -> None:
    write(tmp_path, "import os\n\nRATE = os.environ.get('LEARNINGRATE', 0.01)\n"
                    "DECAY = os.environ.get('DECAY', 0.9)\n", "settings.py")
    write(tmp_path, '''
        import json
        from settings import *

        class Optimizer:
            def __init__(self):
                self.rate = float(RATE)

        if __name__ == "__main__":
            print(json.dumps({"lr_seen": Optimizer().rate}))
        ''')
    run, df = sweep(tmp_path, {"params": {"grid": {"LEARNINGRATE": [0.5, 0.25]}}})
    assert sorted(df["lr_seen"]) == [0.25, 0.5]


def test_a_src_layout_package_is_found_under_another_python_too(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    write(tmp_path, "from toy.cli import main\n\nif __name__ == '__main__':\n    main()\n", "main.py")
    write(tmp_path, "", "src/toy/__init__.py")
    write(tmp_path, '''
        import argparse, json, sys

        def main():
            p = argparse.ArgumentParser()
            p.add_argument("--depth", type=int, default=1)
            print(json.dumps({"depth_seen": p.parse_args().depth, "prefix": sys.prefix}))
        ''', "src/toy/cli.py")
    run, df = sweep(
        tmp_path,
        {"params": {"grid": {"depth": [2, 3]}}},
        script="main.py",
        python="venv/bin/python",
        env={"PYTHONPATH": "src"},
    )
    assert run.exit_code == 0, list(df["error"])
    assert sorted(df["depth_seen"]) == [2, 3] and set(df["prefix"]) == {str(tmp_path / "venv")}
    with pytest.raises(
        SpecError, match=r"params.width: main.py does not accept --width; it accepts: --depth"
    ):
        sweep(tmp_path, {"params": {"grid": {"width": [2]}}}, script="main.py", python="venv/bin/python",
              env={"PYTHONPATH": "src"})
