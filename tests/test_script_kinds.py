"""Scripts as people write them, beyond argparse (DESIGN §2): click, typer, python-fire and Hydra apps. Each
kind's interface is read in a child process without running its main work, params are checked against it
before the run, and a small script written for the test runs end to end with the values it parsed checked in
the results."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchsweep.errors import SpecError
from batchsweep.runs import start as runs
from batchsweep.runs.run import Run
from batchsweep.scripts.options import read_flags
from batchsweep.scripts.starter import starter_text


def write(tmp_path: Path, script: str, name: str = "s.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(script))
    return path


def sweep(tmp_path: Path, spec: dict[str, Any], **extra: Any) -> tuple[Run, Any]:
    path = tmp_path / "sweep.yaml"
    path.write_text(
        yaml.safe_dump({"name": "k", "script": "s.py", "metrics": {"stdout": "last"}, **spec, **extra})
    )
    run = runs.run(path, store=tmp_path / "store", progress=False)
    return run, run.results()


# -- click ------------------------------------------------------------------------------------------------
CLICK = '''
import json, click, pathlib

@click.command()
@click.option("--max-depth", type=int, default=3, help="tree depth")
@click.option("--lr", type=float, required=True)
@click.option("--shuffle/--no-shuffle", default=True)
@click.option("--fast/--slow", "speed", default=False)
@click.option("--verbose", is_flag=True)
@click.option("--tag", multiple=True)
@click.option("--criterion", type=click.Choice(["gini", "entropy"]), default="gini")
@click.option("--size", nargs=2, type=int, default=(1, 2))
@click.argument("name")
def main(max_depth, lr, shuffle, speed, verbose, tag, criterion, size, name):
    print(json.dumps(dict(max_depth=max_depth, lr=lr, shuffle=shuffle, speed=speed, verbose=verbose, tag=list(tag),
                          criterion=criterion, size=list(size), name=name)))

pathlib.Path("imported").touch()
if __name__ == "__main__":
    pathlib.Path("main-ran").touch()
    main()
'''  # noqa: E501


def test_click_options_are_read_without_running_the_command(tmp_path: Path) -> None:
    flags = read_flags(write(tmp_path, CLICK))
    assert flags.known and flags.style == "click"
    depth, shuffle, speed, tag = (flags.lookup(n) for n in ("max_depth", "shuffle", "speed", "tag"))
    assert depth is not None and (depth.option, depth.type, depth.default, depth.help) == (
        "--max-depth",
        "int",
        3,
        "tree depth",
    )
    assert shuffle is not None and (shuffle.kind, shuffle.negative) == ("boolean_optional", "--no-shuffle")
    assert speed is not None and (speed.option, speed.negative) == ("--fast", "--slow")
    assert tag is not None and tag.kind == "append"
    assert not list(tmp_path.glob("main-ran"))


def test_click_sweep_passes_each_value_the_way_click_reads_it(tmp_path: Path) -> None:
    write(tmp_path, CLICK)
    run, df = sweep(
        tmp_path,
        {
            "params": {
                "grid": {
                    "max_depth": [2, 5],
                    "shuffle": [False],
                    "speed": [True],
                    "verbose": [True],
                    "tag": [["a", "b"]],
                    "criterion": ["entropy"],
                    "size": [[3, 4]],
                    "name": ["-x y"],
                    "lr": ["1e-3"],
                }
            }
        },
    )
    assert run.exit_code == 0, df["error"].tolist()
    row = df.iloc[1]
    assert (row["metric_max_depth"], row["metric_lr"], row["metric_shuffle"], row["metric_speed"]) == (
        5,
        0.001,
        False,
        True,
    )
    assert (row["metric_verbose"], row["metric_tag"], row["metric_criterion"]) == (
        True,
        ["a", "b"],
        "entropy",
    )
    assert (row["metric_size"], row["metric_name"]) == ([3, 4], "-x y")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"name": "x"}, "s.py requires --lr but no param supplies it"),
        (
            {"name": "x", "lr": 1, "criterion": "mse"},
            r"'mse' is not one of s.py's choices \['gini', 'entropy'\]",
        ),
        (
            {"name": "x", "lr": 1, "max_depth": "deep"},
            "'deep' is not a valid int, which s.py expects for --max-depth",
        ),
        (
            {"name": "x", "lr": 1, "max_dept": 1},
            "s.py does not accept --max_dept; it accepts: --max-depth, --lr",
        ),
    ],
)
def test_click_params_are_checked_before_running(
    tmp_path: Path, params: dict[str, Any], message: str
) -> None:
    write(tmp_path, CLICK)
    with pytest.raises(SpecError, match=message):
        sweep(tmp_path, {"params": {"list": [params]}})
    assert not (tmp_path / "store").exists()


_PRINT = "    print(json.dumps(dict(depth_seen=depth, frac_seen=frac, cap_seen=cap)))\n"
RANGES = {
    "click": "import json, click\n\n@click.command()\n"
             "@click.option('--depth', type=click.IntRange(1, 10), default=3)\n"
             "@click.option('--frac', type=click.FloatRange(0, 1), default=0.5)\n"
             "@click.option('--cap', type=click.IntRange(0, 5, clamp=True), default=1)\n"
             "def main(depth, frac, cap):\n" + _PRINT + "\nmain()\n",
    "typer": "import json, typer\n\ndef main(depth: int = typer.Option(3, min=1, max=10), frac: float = "
             "typer.Option(0.5, min=0, max=1), cap: int = typer.Option(1, min=0, max=5, clamp=True)):\n"
             + _PRINT + "\ntyper.run(main)\n",
}


@pytest.mark.parametrize("kind", ["click", "typer"])
def test_a_click_or_typer_range_is_checked_before_running(tmp_path: Path, kind: str) -> None:
    """`--lr 1.5` for typer's `min=0, max=1` failed every task at click's own check after the run started."""
    write(tmp_path, RANGES[kind])
    for params, message in (({"depth": 11}, r"params.depth: 11 is outside the range s.py accepts for --depth "
                                            r"\(1 <= x <= 10\)"),
                            ({"frac": 1.5}, r"params.frac: 1.5 is outside .* \(0 <= x <= 1\)")):
        with pytest.raises(SpecError, match=message):
            sweep(tmp_path, {"params": {"list": [params]}})
    run, df = sweep(tmp_path, {"params": {"list": [{"depth": 10, "frac": 0.0, "cap": 9}]}})  # cap clamps
    seen = df[["depth_seen", "frac_seen", "cap_seen"]].values.tolist()
    assert run.exit_code == 0 and seen == [[10, 0.0, 5]]


CLICK_GROUP = '''
import json, click

@click.group()
@click.option("--seed", type=int, default=0)
@click.pass_context
def cli(ctx, seed):
    ctx.obj = seed

@cli.command()
@click.option("--epochs", type=int, default=1)
@click.pass_obj
def train(seed, epochs):
    print(json.dumps({"seed": seed, "epochs": epochs}))

@cli.command()
@click.option("--split", type=click.Choice(["val", "test"]), default="val")
def evaluate(split):
    print(json.dumps({"split": split}))

if __name__ == "__main__":
    cli()
'''


def test_click_group_subcommand_is_selected_by_a_command_param(tmp_path: Path) -> None:
    write(tmp_path, CLICK_GROUP)
    run, df = sweep(tmp_path, {"params": {"list": [{"command": "train", "seed": 3, "epochs": 2},
                                                   {"command": "evaluate", "split": "test"}]}})
    assert run.exit_code == 0
    assert (df.loc[0, "metric_seed"], df.loc[0, "metric_epochs"], df.loc[1, "metric_split"]) == (3, 2, "test")
    with pytest.raises(SpecError, match=r"params.split: 'dev' is not one of s.py's choices"):
        sweep(tmp_path, {"params": {"list": [{"command": "evaluate", "split": "dev"}]}})


def test_init_writes_a_starter_for_a_click_command(tmp_path: Path) -> None:
    text = starter_text(write(tmp_path, CLICK))
    assert "(click)" in text and "    max_depth: [3]  # tree depth" in text
    assert "  fixed:\n    lr: CHANGE_ME  # required\n    name: CHANGE_ME  # required\n" in text


# -- typer (through click's own objects) -------------------------------------------------------------------
TYPER = '''
import json
from enum import Enum
from typing import List
import typer

class Crit(str, Enum):
    gini = "gini"
    entropy = "entropy"

def main(name: str, max_depth: int = 3, lr: float = typer.Option(..., help="rate"), shuffle: bool = True,
         tag: List[str] = typer.Option([]), criterion: Crit = Crit.gini):
    print(json.dumps(dict(name=name, max_depth=max_depth, lr=lr, shuffle=shuffle, tag=tag, criterion=criterion.value)))

if __name__ == "__main__":
    typer.run(main)
'''  # noqa: E501


def test_typer_sweep_passes_dashed_options_flags_lists_and_choices(tmp_path: Path) -> None:
    write(tmp_path, TYPER)
    run, df = sweep(
        tmp_path,
        {
            "params": {
                "grid": {
                    "max_depth": [4],
                    "lr": [0.5],
                    "shuffle": [False, True],
                    "tag": [["a", "b"]],
                    "name": ["n"],
                    "criterion": ["entropy"],
                }
            }
        },
    )
    assert run.exit_code == 0, df["error"].tolist()
    assert df["metric_shuffle"].tolist() == [False, True]
    assert (df.loc[0, "metric_max_depth"], df.loc[0, "metric_tag"], df.loc[0, "metric_criterion"]) == (
        4,
        ["a", "b"],
        "entropy",
    )
    with pytest.raises(SpecError, match=r"'mse' is not one of s.py's choices \['gini', 'entropy'\]"):
        sweep(tmp_path, {"params": {"grid": {"lr": [1], "name": ["n"], "criterion": ["mse"]}}})


# -- python-fire ------------------------------------------------------------------------------------------
FIRE = '''
import json, fire

def train(lr=0.1, depth: int = 3, shuffle=True, name="run", layers=(1, 2)):
    print(json.dumps(dict(lr=lr, depth=depth, shuffle=shuffle, name=name, layers=list(layers),
                          name_type=type(name).__name__)))

if __name__ == "__main__":
    fire.Fire(train)
'''


def test_fire_function_gets_name_value_flags_and_noflag_booleans(tmp_path: Path) -> None:
    write(tmp_path, FIRE)
    run, df = sweep(tmp_path, {"params": {"grid": {"lr": [0.5], "depth": [7], "shuffle": [False, True],
                                                   "name": ["a b", "12"], "layers": [[4, 5]]}}})
    assert run.exit_code == 0, df["error"].tolist()
    assert df["metric_shuffle"].tolist() == df["shuffle"].tolist() and set(df["shuffle"]) == {False, True}
    assert df["metric_name"].map(str).tolist() == df["name"].tolist()
    # '12' reaches the function as text, not as the number fire would read
    assert set(df["name_type"]) == {"str"}
    assert df.loc[0, "metric_layers"] == [4, 5] and df.loc[0, "metric_depth"] == 7
    with pytest.raises(SpecError, match="s.py does not accept --rate"):
        sweep(tmp_path, {"params": {"grid": {"rate": [1]}}})


FIRE_CLASS = '''
import json, fire

class Model:
    def __init__(self, seed=0):
        self.seed = seed

    def fit(self, lr=0.1, verbose=False):
        print(json.dumps(dict(seed=self.seed, lr=lr, verbose=verbose)))

    def score(self, split="val"):
        print(json.dumps(dict(seed=self.seed, split=split)))

if __name__ == "__main__":
    fire.Fire(Model)
'''


def test_fire_class_methods_are_commands(tmp_path: Path) -> None:
    write(tmp_path, FIRE_CLASS)
    run, df = sweep(tmp_path, {"params": {"list": [{"command": "fit", "seed": 3, "lr": 0.2, "verbose": True},
                                                   {"command": "score", "split": "test"}]}})
    assert run.exit_code == 0, df["error"].tolist()
    assert (df.loc[0, "metric_seed"], df.loc[0, "metric_lr"], df.loc[0, "metric_verbose"]) == (3, 0.2, True)
    assert df.loc[1, "metric_split"] == "test"


# -- Hydra ---------------------------------------------------------------------------------------------------
HYDRA = '''
import logging
import hydra
from omegaconf import DictConfig

log = logging.getLogger(__name__)

@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    log.info("training %s", cfg.model.name)
    with open("seen.txt", "w") as f:
        f.write(f"{cfg.model.name} {cfg.train.lr!r} {cfg.train.extra!r} {cfg.get('note')}")
    return cfg.model.depth * 10 + cfg.train.lr

if __name__ == "__main__":
    main()
'''


@pytest.fixture
def hydra_app(tmp_path: Path) -> Path:
    write(tmp_path, HYDRA)
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "config.yaml").write_text(
        "defaults:\n  - model: rf\n  - _self_\ntrain:\n  lr: 0.1\n  epochs: 3\n  extra: 1\nseed: 0\n")
    (tmp_path / "conf" / "model" / "rf.yaml").write_text("name: rf\ndepth: 3\n")
    (tmp_path / "conf" / "model" / "gb.yaml").write_text("name: gb\ndepth: 5\n")
    return tmp_path


def test_hydra_app_gets_overrides_and_its_return_value_is_the_metric(hydra_app: Path) -> None:
    run, df = sweep(
        hydra_app,
        {
            "params": {
                "grid": {"model": ["rf", "gb"], "train.lr": ["1e-3"]},
                "fixed": {"train.extra": None, "+note": "it's x"},
            }
        },
        metrics="metrics.json",
    )
    assert run.exit_code == 0, df["error"].tolist()
    assert df["value"].tolist() == [30.001, 50.001]
    seen = run.store.local_path(run.store.task_key(run.id, 1, "outputs", "seen.txt")).read_text()
    assert seen == "gb 0.001 None it's x"
    outputs = df.loc[0, "outputs"]
    # Hydra's files and its file log, in the task dir
    assert ".hydra/config.yaml" in outputs and "s.log" in outputs


def test_a_hydra_param_value_arrives_as_written_never_interpolated(hydra_app: Path) -> None:
    """A value that Hydra would read as an interpolation (`${oc.env:HOME}`: the runner's environment, or any
    resolver) or mangle (backslashes, quotes) reaches the app as the spec wrote it."""
    values = ["${oc.env:HOME}", "a\\${oc.env:HOME}", "C:\\temp\\", "it's \\' end\\"]
    run, df = sweep(hydra_app, {"params": {"grid": {"+note": values}}})
    assert run.exit_code == 0, df["error"].tolist()
    seen = [run.store.local_path(run.store.task_key(run.id, i, "outputs", "seen.txt")).read_text()
            for i in range(len(values))]
    assert [s.split(" ", 3)[3] for s in seen] == values


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"train.lrr": 1},
            r"params.train.lrr: not a key of s.py's config; its keys: model, model.name, model.depth, "
            r"train, train.lr, train.epochs, train.extra, seed \(write `\+train.lrr` to add a new key\)",
        ),
        ({"model": "svm"}, r"params.model: 'svm' is not one of s.py's choices \['gb', 'rf'\]"),
    ],
)
def test_hydra_params_are_checked_against_the_composed_config(hydra_app: Path, params: dict[str, Any],
                                                              message: str) -> None:
    with pytest.raises(SpecError, match=message):
        sweep(hydra_app, {"params": {"list": [params]}})


def test_init_lists_a_hydra_apps_config(hydra_app: Path) -> None:
    text = starter_text(hydra_app / "s.py")
    assert (
        "(hydra)" in text
        and "    model: [\"rf\"]  # choices: ['gb', 'rf']" in text
        and "    train.lr: [0.1]" in text
    )
    # the keys that come with the chosen model, commented (a model swept without one would fail)
    assert "    # model=rf's keys" in text and "\n    # model.depth: [3]\n" in text
    assert "\n    model.depth:" not in text


def test_init_lists_a_hydra_apps_keys_up_to_fifty(hydra_app: Path) -> None:
    many = "".join(f"  k{i:02d}: {i}\n" for i in range(60))
    (hydra_app / "conf" / "model" / "rf.yaml").write_text(f"name: rf\ndepth: 3\nwide:\n{many}")
    text = starter_text(hydra_app / "s.py")
    keys = [line.split(":")[0].strip("# ") for line in text.splitlines()
            if line.startswith(("    model.", "    # model.", "    train.", "    seed"))]
    assert len(keys) == 50 and keys[:6] == ["model.name", "model.depth", "model.wide.k00", "model.wide.k01",
                                            "model.wide.k02", "model.wide.k03"]
    assert keys[-4:] == ["train.lr", "train.epochs", "train.extra", "seed"]  # the app's own come first
    assert "# … and 16 more keys of its config: python s.py --cfg job shows them all" in text


# -- the explicit override, and the command line shown
# ----------------------------------------------------------
PLAIN = '''
import json, sys
print(json.dumps({"argv": sys.argv[1:]}))
'''


def test_args_override_spells_undeclared_flags_with_dashes_and_boolean_values(tmp_path: Path) -> None:
    write(tmp_path, PLAIN)
    run, df = sweep(tmp_path, {"params": {"grid": {"max_depth": [3], "fast": [True], "slow": [False]}}},
                    args={"style": "plain", "dashes": True, "bool": "value"})
    assert run.exit_code == 0
    # (yaml.safe_dump sorts keys)
    assert df.loc[0, "argv"] == ["--fast", "True", "--max-depth", "3", "--slow", "False"]


def test_args_style_that_contradicts_the_script_is_refused(tmp_path: Path) -> None:
    write(tmp_path, CLICK)
    with pytest.raises(SpecError, match="args.style: s.py reads its command line with click, not fire"):
        sweep(tmp_path, {"params": {"grid": {"lr": [1], "name": ["x"]}}}, args={"style": "fire"})


def test_dry_run_prints_and_status_records_each_tasks_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from batchsweep import cli

    write(tmp_path, CLICK)
    (tmp_path / "sweep.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "k",
                "script": "s.py",
                "metrics": {"stdout": "last"},
                "params": {"grid": {"max_depth": [2], "lr": [0.5], "shuffle": [False], "name": ["a b"]}},
            },
            sort_keys=False,
        )
    )
    assert cli.main(["run", str(tmp_path / "sweep.yaml"), "--dry-run"]) == 0
    expect = "python s.py --max-depth 2 --lr 0.5 --no-shuffle -- 'a b'"
    assert f"  0  {expect}" in capsys.readouterr().out
    run = runs.run(tmp_path / "sweep.yaml", store=tmp_path / "store", progress=False)
    assert run.statuses()[0].command == expect


def test_python_field_runs_the_tasks_and_reads_the_flags_with_that_python(tmp_path: Path) -> None:
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv ml")], check=True)
    write(tmp_path, '''
        import argparse, json, sys
        p = argparse.ArgumentParser()
        p.add_argument("--n", type=int)
        print(json.dumps({"python": sys.prefix, "n": p.parse_args().n}))
    ''')
    run, df = sweep(tmp_path, {"params": {"grid": {"n": [1]}}}, python="venv ml/bin/python")
    assert run.exit_code == 0, df["error"].tolist()
    assert df.loc[0, "python"] == str(tmp_path / "venv ml") and df.loc[0, "metric_n"] == 1
    # the run's provenance lists that python's packages (none in a bare venv), not batchsweep's own
    provenance = run.record.provenance
    assert provenance["package_versions"] == {} and provenance["packages"] == 0
    # flags read by that python too
    with pytest.raises(SpecError, match=r"params.m: s.py does not accept --m"):
        sweep(tmp_path, {"params": {"grid": {"m": [1]}}}, python="venv ml/bin/python")


def test_hydra_group_outside_the_defaults_list_is_added_with_plus(tmp_path: Path) -> None:
    write(tmp_path, '''
        import hydra
        from omegaconf import DictConfig

        @hydra.main(version_base=None, config_path="conf")
        def main(cfg: DictConfig) -> dict:
            return {"driver": cfg.db.driver, "port": cfg.db.port}

        if __name__ == "__main__":
            main()
    ''')
    (tmp_path / "conf" / "db").mkdir(parents=True)
    (tmp_path / "conf" / "db" / "mysql.yaml").write_text("driver: mysql\nport: 1\n")
    (tmp_path / "conf" / "db" / "pg.yaml").write_text("driver: pg\nport: 2\n")
    run, df = sweep(
        tmp_path, {"params": {"grid": {"db": ["mysql", "pg"], "db.port": [7]}}}, metrics="metrics.json"
    )
    assert run.exit_code == 0, df["error"].tolist()
    assert df["driver"].tolist() == ["mysql", "pg"] and df["port"].tolist() == [7, 7]
    assert run.statuses()[0].command == "python s.py +db=mysql db.port=7 hydra.run.dir=."


def test_hydra_config_that_cannot_be_composed_stops_the_run_with_hydras_reason(hydra_app: Path) -> None:
    (hydra_app / "conf" / "config.yaml").write_text("defaults:\n  - model: xgb\n")
    with pytest.raises(
        SpecError,
        match=r"could not compose s.py's Hydra config \(Hydra: In 'config': Could not find "
        r"'model/xgb'",
    ):
        sweep(hydra_app, {"params": {"grid": {"seed": [1]}}})


# -- working directory and inputs
# ---------------------------------------------------------------------------------
def test_input_staged_at_its_dst_and_the_users_files_are_never_changed(tmp_path: Path) -> None:
    write(tmp_path, '''
        import argparse, json, pathlib
        p = argparse.ArgumentParser(); p.add_argument("--i", type=int); a = p.parse_args()
        prices = pathlib.Path("datas/yhoo.txt").read_text()
        pathlib.Path("datas/yhoo.txt").write_text(prices + "tampered\\n")   # writes through the staged input
        (pathlib.Path("ref") / "cache.pkl").write_text("x")                  # and into a staged directory
        print(json.dumps({"first": prices.splitlines()[0], "ref": pathlib.Path("ref/a.txt").read_text()}))
    ''')
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "yhoo.txt").write_text("1.5\n")
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / "a.txt").write_text("A")
    run, df = sweep(tmp_path, {"params": {"grid": {"i": [0]}},
                               "inputs": [{"src": "data/yhoo.txt", "dst": "datas/yhoo.txt"}, "ref"]})
    assert run.exit_code == 0, df["error"].tolist()
    assert (df.loc[0, "first"], df.loc[0, "ref"]) == (1.5, "A")
    assert (tmp_path / "data" / "yhoo.txt").read_text() == "1.5\n" and not (
        tmp_path / "ref" / "cache.pkl"
    ).exists()
    # what the task changed is collected, not a.txt
    assert df.loc[0, "outputs"] == ["datas/yhoo.txt", "ref/cache.pkl"]


@pytest.mark.parametrize(("dst", "message"), [
    ("../escape.txt", "an input's dst must be a relative path inside the task's working directory"),
    ("/abs.txt", "an input's dst must be a relative path"),
    (".", "dst '.' names no file or directory"),
])
def test_input_dst_outside_the_task_directory_is_refused(tmp_path: Path, dst: str, message: str) -> None:
    write(tmp_path, PLAIN)
    (tmp_path / "a.txt").write_text("a")
    with pytest.raises(SpecError, match=message):
        sweep(tmp_path, {"params": {"grid": {"i": [0]}}, "inputs": [{"src": "a.txt", "dst": dst}]})


def test_hydra_override_spellings() -> None:
    from batchsweep.scripts.argv import build_argv
    from batchsweep.scripts.options import ScriptFlags

    flags = ScriptFlags(known=False, style="hydra")
    assert build_argv(
        {"a": "x y", "b": None, "c": [1, "two"], "d": True, "e": "it's", "f": "true"}, flags
    ) == ["a='x y'", "b=null", "c=[1,two]", "d=true", "e='it\\'s'", "f='true'", "hydra.run.dir=."]
    assert build_argv({"hydra.run.dir": "out"}, flags) == ["hydra.run.dir=out"]  # the user's own run dir wins
