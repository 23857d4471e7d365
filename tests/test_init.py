"""`batchsweep init SCRIPT`: a starter sweep.yaml from the script's own argparse flags."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from batchsweep import cli

SCRIPTS = Path(__file__).parent / "scripts"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    shutil.copy(SCRIPTS / "u_target.py", tmp_path / "target.py")
    return tmp_path


def init(*argv: str) -> int:
    return cli.main(["init", *argv])


def test_init_writes_sweep_yaml_beside_the_script(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert init("target.py") == 0
    assert (project / "sweep.yaml").is_file()
    assert "wrote sweep.yaml" in capsys.readouterr().out


def test_starter_lists_each_flag_with_its_default(project: Path) -> None:
    init("target.py")
    spec = yaml.safe_load((project / "sweep.yaml").read_text())
    assert spec["name"] == "target"
    assert spec["script"] == "target.py"
    assert spec["params"]["grid"] == {"window": [5], "symbol": ["BTC"], "mode": ["fast"]}
    # required: one value for every task, under fixed; an output name made per task from the grid's params
    assert spec["params"]["fixed"] == {"save_name": "save_{window}_{symbol}_{mode}"}


def test_starter_shows_help_choices_and_required_as_comments(project: Path) -> None:
    init("target.py")
    lines = {line.split(":")[0].strip(): line for line in (project / "sweep.yaml").read_text().splitlines()}
    assert "# window length" in lines["window"]
    assert "# coin pair" in lines["symbol"]
    assert "choices: ['fast', 'slow']" in lines["mode"]
    assert "required" in lines["save_name"]


def test_starter_for_a_script_elsewhere_points_back_to_it(project: Path) -> None:
    (project / "sweeps").mkdir()
    assert init("target.py", "-o", "sweeps/first.yaml") == 0
    assert yaml.safe_load((project / "sweeps" / "first.yaml").read_text())["script"] == "../target.py"


def test_init_dash_o_dash_prints_the_spec_alone_to_stdout(project: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert init("target.py", "-o", "-") == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out)["script"] == "target.py" and "batchsweep run sweep.yaml" in err
    assert sorted(p.name for p in project.iterdir()) == ["target.py"]


@pytest.mark.parametrize("redirect", ["pipe", "file"])
def test_init_to_dev_stdout_is_written_not_refused_as_existing(project: Path, redirect: str) -> None:
    import subprocess
    import sys

    with open(project / "saved.yaml", "w+") as saved:
        done = subprocess.run(
            [sys.executable, "-m", "batchsweep", "init", "target.py", "-o", "/dev/stdout"],
            stdout=subprocess.PIPE if redirect == "pipe" else saved, stderr=subprocess.PIPE, text=True,
            timeout=120,
        )
        saved.seek(0)
        out = done.stdout if redirect == "pipe" else saved.read()
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(out)["script"] == "target.py"


def test_force_overwrites_an_existing_file(project: Path) -> None:
    (project / "sweep.yaml").write_text("old\n")
    assert init("target.py", "--force") == 0
    assert "name: target" in (project / "sweep.yaml").read_text()


def test_starter_runs_as_a_dry_run_once_change_me_is_filled(project: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    init("target.py")
    path = project / "sweep.yaml"
    path.write_text(
        path.read_text().replace("CHANGE_ME", "out").replace("window: [5]", "window: [5, 10, 20]")
    )
    capsys.readouterr()

    code = cli.main(["run", "sweep.yaml", "--dry-run", "--store", str(project / "store")])

    out = capsys.readouterr().out
    assert code == 0
    assert "3 tasks" in out
    assert "dry run: nothing was started" in out
    assert not (project / "store" / "runs").exists()


def test_starter_with_change_me_left_in_is_still_valid_yaml(project: Path) -> None:
    init("target.py")
    spec = yaml.safe_load((project / "sweep.yaml").read_text())
    assert spec["timeout"] == "10m" and spec["metrics"] == "metrics.json"


def dry_run_of_starter_for(project: Path, script_name: str) -> tuple[int, dict[str, object]]:
    shutil.copy(SCRIPTS / "u_target.py", project / script_name)
    assert init(script_name, "-o", "s.yaml") == 0
    path = project / "s.yaml"
    path.write_text(path.read_text().replace("CHANGE_ME", "out"))
    return cli.main(["run", "s.yaml", "--dry-run", "--store", str(project / "store")]), yaml.safe_load(
        path.read_text()
    )


def test_starter_name_is_made_safe_from_spaces_and_capitals(project: Path) -> None:
    code, spec = dry_run_of_starter_for(project, "My Script.py")
    assert code == 0
    assert spec["name"] == "my-script" and spec["script"] == "My Script.py"


def test_starter_for_a_script_with_a_leading_underscore_is_a_valid_spec(project: Path) -> None:
    code, spec = dry_run_of_starter_for(project, "_train.py")
    assert code == 0
    assert spec["name"] == "train"


def test_starter_for_a_script_with_a_hash_in_its_name_is_a_valid_spec(project: Path) -> None:
    code, spec = dry_run_of_starter_for(project, "run #2.py")
    assert code == 0
    assert spec["script"] == "run #2.py"


def test_a_script_that_logs_to_mlflow_gets_the_mlflow_rule(project: Path) -> None:
    shutil.copy(SCRIPTS / "mlflow_curve.py", project / "train.py")
    assert init("train.py") == 0
    text = (project / "sweep.yaml").read_text()
    assert yaml.safe_load(text)["metrics"] == {"mlflow": True}
    init("target.py", "-o", "plain.yaml")  # a script without MLflow keeps the default
    plain = (project / "plain.yaml").read_text()
    assert yaml.safe_load(plain)["metrics"] == "metrics.json"
    # The commented-out example input is valid YAML once uncommented (a bare {symbol} in a flow list is not).
    line = next(line for line in plain.splitlines() if line.startswith("# inputs:"))
    assert yaml.safe_load(line.removeprefix("# ").split("   ")[0]) == {"inputs": ["data/{symbol}.csv"]}


def test_the_starters_comment_names_the_file_written(project: Path) -> None:
    assert init("target.py", "-o", "init.yaml") == 0
    text = (project / "init.yaml").read_text()
    assert "batchsweep run init.yaml" in text and "sweep.yaml" not in text
    (project / "sweeps").mkdir()
    assert init("target.py", "-o", "sweeps/my sweep.yaml") == 0
    assert "batchsweep run 'sweeps/my sweep.yaml'" in (project / "sweeps" / "my sweep.yaml").read_text()


def test_init_help_names_every_kind_of_script_it_reads(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    top = " ".join(capsys.readouterr().out.split())
    assert "an existing argparse script" not in top
    assert "init write a starter sweep.yaml from a script's command line (argparse, optparse, click" in top
    with pytest.raises(SystemExit):
        cli.main(["init", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "click, typer, fire, Hydra" in help_text and "the argparse script" not in help_text


def test_the_metrics_rule_reads_name_value_pairs_a_training_loop_prints(tmp_path: Path) -> None:
    """`print(f"epoch={epoch}, accuracy={acc}, loss={loss}")`, as a tracking example prints each epoch: the
    rule reads the last of each (init wrote 'none found in its source: write metrics.json')."""
    from batchsweep.metrics import from_text
    from batchsweep.scripts.starter import starter_text

    script = tmp_path / "main.py"
    script.write_text(
        "import os, random\nepochs = int(os.environ.get('epochs', 10))\nfor epoch in range(2, epochs):\n"
        "    acc = 1 - 2**-epoch - random.random() / epoch\n    loss = 2**-epoch + random.random() / epoch\n"
        "    print(f\"epoch={epoch}, accuracy={acc}, loss={loss}\")\nprint('rmse=%.3f' % 0.5)\n")
    rule = yaml.safe_load(starter_text(script))["metrics"]
    assert rule == {
        "stdout": r"accuracy=(?P<accuracy>[^\s,;]+)|loss=(?P<loss>[^\s,;]+)|rmse=(?P<rmse>[^\s,;]+)"
    }
    out = "epoch=2, accuracy=0.6, loss=0.3\nepoch=3, accuracy=0.8, loss=0.2\nrmse=0.500\n"
    assert from_text(out, rule["stdout"]) == {"accuracy": 0.8, "loss": 0.2, "rmse": 0.5}


def test_the_metrics_rule_reads_the_values_the_script_prints_or_logs_by_label(tmp_path: Path) -> None:
    from batchsweep.scripts.starter import starter_text

    script = tmp_path / "train.py"
    script.write_text(
        "import logging, os\nlog = logging.getLogger(__name__)\n"
        "print('MLflow Version:', '2.1')\nprint('  rmse:', 0.5)\nprint('Test accuracy: %f' % 0.9)\n"
        "log.info(f'Val loss: {0.25}')\nlr = float(os.environ.get('LR', '0.1'))\n")
    rule = yaml.safe_load(starter_text(script))["metrics"]
    assert rule == {
        "output": r"rmse: (?P<rmse>\S+)|Test accuracy: (?P<test_accuracy>\S+)|Val loss: (?P<val_loss>\S+)"
    }
    from batchsweep.metrics import from_text

    assert from_text(
        "MLflow Version: 2.1\n  rmse: 0.5\nTest accuracy: 0.900000\nVal loss: 0.25\n", rule["output"]
    ) == {"rmse": 0.5, "test_accuracy": 0.9, "val_loss": 0.25}


def test_the_metrics_rule_reads_the_json_file_a_backtest_writes_its_results_to(tmp_path: Path) -> None:
    """A pairs backtest that json.dump()s its summary to `--out results/summary.json` and prints nothing got
    'none found in its source: write metrics.json', though a file rule reads any JSON file it writes."""
    from batchsweep.runs import start as runs
    from batchsweep.scripts.starter import write_starter

    script = tmp_path / "pairs.py"
    script.write_text(
        "import argparse, json, os\np = argparse.ArgumentParser()\n"
        "p.add_argument('--pair', default='BTC-ETH')\np.add_argument('--window', type=int, default=60)\n"
        "p.add_argument('--out', default='results/summary.json')\na = p.parse_args()\n"
        "os.makedirs(os.path.dirname(a.out), exist_ok=True)\nwith open(a.out, 'w') as f:\n"
        "    json.dump({'pnl': a.window * len(a.pair)}, f)\n")
    spec = write_starter(str(script))
    assert yaml.safe_load(spec.read_text())["metrics"] == "results/summary.json"
    spec.write_text(spec.read_text().replace('window: [60]', 'window: [10, 20]'))
    df = runs.run(spec, store=tmp_path / "store", progress=False).results()
    assert sorted(df["pnl"]) == [70, 140]


def test_a_default_with_braces_goes_under_fixed_filled_per_task_or_left_to_the_script(tmp_path: Path) -> None:
    """`--out model_{lr}.pt` was written as a one-value grid list, and `--log run_{}_{date}.log` too, whose
    `{date}` the run then refused ("placeholder {date} names no param"): the starter init wrote could not
    run."""
    from batchsweep.planning.plan import plan
    from batchsweep.scripts.starter import starter_text

    script = tmp_path / "t.py"
    script.write_text(
        "import argparse, json\np = argparse.ArgumentParser()\np.add_argument('--lr', type=float, "
        "default=0.1)\np.add_argument('--out', default='model_{lr}.pt')\np.add_argument('--log', "
        "default='run_{}_{date}.log')\na = p.parse_args()\nprint(json.dumps({'loss': a.lr, 'out': a.out, "
        "'log': a.log}))\n"
    )
    text = starter_text(script)
    spec = yaml.safe_load(text)
    assert spec["params"] == {"grid": {"lr": [0.1]}, "fixed": {"out": "model_{lr}.pt"}}
    assert "# log: \"run_{}_{date}.log\"  # the script's default, left to it" in text
    spec["params"]["grid"]["lr"] = [0.1, 0.2]
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(spec))
    assert [t.params["out"] for t in plan(tmp_path / "sweep.yaml").tasks] == ["model_0.1.pt", "model_0.2.pt"]


def test_a_default_the_flags_own_type_refuses_is_left_to_the_script(tmp_path: Path) -> None:
    """Blondel's kernel matching pursuit benchmark declares `--n_components` with `default=0.5, type="int"`:
    the starter listed `n_components: [0.5]`, which the run refused ("0.5 is not a valid int"), since optparse
    converts the text it is given but never a default."""
    from batchsweep.scripts.starter import starter_text

    script = tmp_path / "kmp.py"
    script.write_text(
        "from optparse import OptionParser\nop = OptionParser()\n"
        "op.add_option('-n', action='store', default=200, dest='n_nonzero_coefs', type='int')\n"
        "op.add_option('--n_components', action='store', default=0.5, dest='n_components', type='int')\n"
        "(opts, args) = op.parse_args()\nprint(opts)\n")
    text = starter_text(script)
    assert yaml.safe_load(text)["params"]["grid"] == {"n_nonzero_coefs": [200]}
    assert "# n_components: [0.5]  # not an int: the script's own default" in text
