"""Scripts run unmodified (issue #31): each under tests/scripts/as_written/ is written the way people write
such a script (settings as module-level values, optparse, a typer app in a src/ layout, sys.argv by position),
its spec is the one `init` writes with only the values edited, and each task's numbers are checked against the
script run by hand or computed independently."""

from __future__ import annotations

import json
import math
import os
import re
import runpy
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchsweep.planning import keys
from batchsweep.runs import start as runs
from batchsweep.scripts.starter import write_starter
from batchsweep.spec.reader import load as load_spec

AS_WRITTEN = Path(__file__).parent / "scripts" / "as_written"


def copy(name: str, tmp_path: Path) -> Path:
    target, source = tmp_path / name, AS_WRITTEN / name
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy(source, target)
    return target


def set_values(spec: Path, **grid: list[Any]) -> None:
    """What a user does with the starter: replace the values of the params listed, nothing else."""
    text = spec.read_text()
    for name, values in grid.items():
        line = f"{name}: {json.dumps(values)}"
        text, count = re.subn(
            rf"^(\s+){name}: \[.*?\]", lambda m, line=line: m.group(1) + line, text, count=1, flags=re.M
        )
        assert count == 1, f"{name} not in the starter:\n{text}"
    spec.write_text(text)


def set_key(spec: Path, key: str, value: Any) -> None:
    text = spec.read_text()
    text, count = re.subn(rf"^{key}: .*$", lambda _: f"{key}: {json.dumps(value)}", text, count=1, flags=re.M)
    if not count:
        text += f"{key}: {json.dumps(value)}\n"
    spec.write_text(text)


def sweep(spec: Path) -> Any:
    run = runs.run(spec, store=spec.parent / "store", progress=False)
    df = run.results()
    assert run.exit_code == 0, df["error"].tolist()
    return df


def by_hand(argv: list[str], *, cwd: Path, pythonpath: Path, env: dict[str, str] | None = None) -> str:
    """What a script prints when run by hand, as its README says (this interpreter, its PYTHONPATH)."""
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, check=True, cwd=cwd,
                          env={**os.environ, **(env or {}), "PYTHONPATH": str(pythonpath)}).stdout


# -- module-level values: settings a user edits at the top of the file
# ----------------------------------------------------
def test_a_script_of_module_level_settings_gets_each_tasks_kernel_and_gamma_as_its_module_values(
        tmp_path: Path) -> None:
    script = copy("ring_kernels.py", tmp_path)
    spec = write_starter(str(script))
    starter = spec.read_text()
    assert (
        "args: {style: globals}" in starter and 'kernel: ["linear"]' in starter and "gamma: [10]" in starter
    )
    # the rule for what it prints, from its print calls
    assert yaml.safe_load(starter)["metrics"] == {
        "stdout": r"Train accuracy: (?P<train_accuracy>\S+)|Test accuracy: (?P<test_accuracy>\S+)"}
    set_values(spec, kernel=["linear", "rbf"], gamma=[10, 0.1])
    df = sweep(spec)

    def edited_by_hand(kernel: str, gamma: float) -> list[float]:
        text = script.read_text().replace('\nkernel = "linear"', f"\nkernel = {kernel!r}", 1)
        hand = tmp_path / "by_hand.py"
        hand.write_text(text.replace("\ngamma = 10\n", f"\ngamma = {gamma!r}\n", 1))
        out = by_hand([str(hand)], cwd=tmp_path, pythonpath=tmp_path)
        return [float(v) for v in re.findall(r"accuracy: (\S+)", out)]

    rows = {(r.kernel, r.gamma): [r.train_accuracy, r.test_accuracy] for r in df.itertuples()}
    assert rows == {(k, g): edited_by_hand(k, g) for k in ("linear", "rbf") for g in (10, 0.1)}
    # the params reached the script: gamma changes what the rbf kernel sees, and nothing the linear one does
    assert rows[("rbf", 10)] != rows[("rbf", 0.1)] and rows[("linear", 10)] == rows[("linear", 0.1)]


# -- optparse: a benchmark whose options have their own dest names
# -------------------------------------------------------------
def test_an_optparse_script_gets_its_options_by_dest_and_flag_name(tmp_path: Path) -> None:
    from sklearn.random_projection import johnson_lindenstrauss_min_dim

    script = copy("jl_projection.py", tmp_path)
    spec = write_starter(str(script))
    assert re.search(r'^    n_components: \["auto"\]', spec.read_text(), re.M)
    # `--seed` is stored as random_seed: the param is the dest, the script gets the flag
    set_values(spec, n_components=["auto", 40], eps=[0.3, 0.5], n_samples=[20], n_features=[50],
               random_seed=[3])
    set_key(spec, "metrics", {"stdout": r"n_components \t= (?P<components>\d+)"
                                        r"|max distortion \t= (?P<max_distortion>\S+)"})
    df = sweep(spec)
    seen = {(r.n_components, r.eps): r.components for r in df.itertuples()}
    assert seen == {("auto", 0.3): johnson_lindenstrauss_min_dim(20, eps=0.3),
                    ("auto", 0.5): johnson_lindenstrauss_min_dim(20, eps=0.5), (40, 0.3): 40, (40, 0.5): 40}

    def distortion_by_hand(n_components: str, eps: float) -> float:
        out = by_hand([str(script), "--n-components", n_components, "--eps", str(eps), "--n-samples", "20",
                       "--n-features", "50", "--seed", "3"], cwd=tmp_path, pythonpath=tmp_path)
        return float(re.findall(r"max distortion \t= (\S+)", out)[0])

    assert {(r.n_components, r.eps): r.max_distortion for r in df.itertuples()} == {
        (n, e): distortion_by_hand(str(n), e) for n in ("auto", 40) for e in (0.3, 0.5)}


# -- typer, in a src/ layout: an app of subcommands inside its own package
# -------------------------------------
def test_a_typer_app_in_a_src_layout_runs_from_the_spec_init_writes(tmp_path: Path) -> None:
    project = copy("dartboard", tmp_path)
    script = project / "src" / "darts" / "cli.py"
    spec = write_starter(str(script), output=str(project / "sweep.yaml"))
    starter = yaml.safe_load(spec.read_text())
    assert starter["env"] == {"PYTHONPATH": "src"} and starter["script"] == "src/darts/cli.py"
    assert starter["params"]["grid"]["command"] == ["pi"] and starter["metrics"] == {"stdout": "last"}
    # `--json` is stored as json_output: the param is the function's argument, the script gets the flag
    set_values(spec, n=[1000, 20000], seed=[1, 2], json_output=[True])
    df = sweep(spec)

    def pi_by_hand(n: int, seed: int) -> Any:
        out = by_hand([str(script), "pi", "--n", str(n), "--seed", str(seed), "--json"], cwd=project,
                      pythonpath=project / "src")
        return json.loads(out)["pi_estimate"]

    rows = {(r.n, r.seed): r.pi_estimate for r in df.itertuples()}
    assert (
        rows == {(n, s): pi_by_hand(n, s) for n in (1000, 20000) for s in (1, 2)}
        and len(set(rows.values())) == 4
    )
    share = math.pi / 4
    for (n, _), estimate in rows.items():  # 4 x the share of n darts inside: a count, within 5 std errors
        assert estimate * n / 4 == pytest.approx(round(estimate * n / 4))
        assert abs(estimate - math.pi) < 5 * 4 * math.sqrt(share * (1 - share) / n)
    # the package's modules the app imports through PYTHONPATH are its code: an edit there changes the key
    identity = keys.code_identity(load_spec(spec))
    assert {"cli.py", "sampling.py", "stats.py", "__init__.py"} <= set(identity.files)
    assert "darts" not in identity.packages


@pytest.mark.parametrize("where", ["beside", "root"])
def test_init_reads_a_script_inside_its_own_package_with_the_pythonpath_a_run_uses(tmp_path: Path,
                                                                                    where: str) -> None:
    project = copy("dartboard", tmp_path)
    output = project / "src" / "darts" / "sweep.yaml" if where == "beside" else project / "sweep.yaml"
    write_starter(str(project / "src" / "darts" / "cli.py"), output=str(output))
    starter = yaml.safe_load(output.read_text())
    assert starter["env"] == {"PYTHONPATH": ".." if where == "beside" else "src"}
    assert (output.parent / starter["env"]["PYTHONPATH"]).resolve() == (project / "src").resolve()


def test_init_python_reads_the_script_with_that_python_and_writes_it_relative_to_the_spec(
    tmp_path: Path,
) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv-ml")], check=True)
    script = tmp_path / "code" / "train.py"
    script.parent.mkdir()
    script.write_text("import argparse, sys\nparser = argparse.ArgumentParser()\n"
                      "parser.add_argument('--prefix', default=sys.prefix)\nparser.parse_args()\n")
    spec = write_starter(str(script), python=str(tmp_path / "venv-ml" / "bin" / "python"))
    starter = yaml.safe_load(spec.read_text())
    assert starter["python"] == "../venv-ml/bin/python"
    assert starter["params"]["grid"]["prefix"] == [str(tmp_path / "venv-ml")]


def test_a_venv_on_the_same_base_python_has_its_own_package_versions(tmp_path: Path) -> None:
    # every venv's python links to the same base interpreter: its packages are still its own
    from batchsweep.planning.packages import package_versions

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    assert os.path.realpath(tmp_path / "venv" / "bin" / "python") == os.path.realpath(sys.executable)
    assert package_versions(["yaml"])["PyYAML"] == yaml.__version__
    assert package_versions(["yaml"], str(tmp_path / "venv" / "bin" / "python")) == {"yaml": "not installed"}


# -- sys.argv by position, logging to MLflow
# ------------------------------------------
# MLflow here is a stand-in that records nothing (a real store takes seconds a task): what is under test is
# that alpha and l1_ratio reach `float(sys.argv[1])` and `float(sys.argv[2])`.
MLFLOW_STAND_IN = (
    "import contextlib\n\n\ndef start_run(*args, **kwargs):\n    return contextlib.nullcontext()\n\n\n"
    "def log_param(*args, **kwargs):\n    pass\n\n\nlog_metric = log_param\n"
)


def test_a_script_reading_sys_argv_by_position_gets_each_tasks_alpha_and_l1_ratio(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.linear_model import ElasticNet

    script = copy("elastic_net.py", tmp_path)
    spec = write_starter(str(script))
    starter = spec.read_text()
    # not `--alpha 0.1`, which the script would read as float("--alpha"), nor its module-level N_ROWS
    assert "args: {style: argv}" in starter and "N_ROWS" not in starter
    assert yaml.safe_load(starter)["params"]["grid"] == {"alpha": [0.5], "l1_ratio": [0.5]}
    assert yaml.safe_load(starter)["metrics"] == {"mlflow": True}
    (tmp_path / "offline" / "mlflow").mkdir(parents=True)
    (tmp_path / "offline" / "mlflow" / "__init__.py").write_text(MLFLOW_STAND_IN)
    set_values(spec, alpha=[0.05, 0.5], l1_ratio=[0.2, 0.9])
    set_key(spec, "metrics", {"stdout": r"alpha=(?P<alpha_seen>[\d.]+), l1_ratio=(?P<l1_seen>[\d.]+)"
                                        r"|test RMSE: (?P<rmse>\S+)"})
    set_key(spec, "env", {"PYTHONPATH": "offline"})
    df = sweep(spec)

    assert sorted((r.alpha, r.alpha_seen, r.l1_ratio, r.l1_seen) for r in df.itertuples()) == [
        (a, a, l1, l1) for a in (0.05, 0.5) for l1 in (0.2, 0.9)]
    rows = {(r.alpha, r.l1_ratio): r.rmse for r in df.itertuples()}
    assert len(set(rows.values())) == 4  # the params reached the script
    # each task's RMSE is scikit-learn's ElasticNet's on the script's data, with the task's alpha and l1_ratio
    monkeypatch.setitem(sys.modules, "mlflow", types.ModuleType("mlflow"))  # only used under its main guard
    module = runpy.run_path(str(script))
    xs, ys = module["make_data"](module["N_ROWS"], module["SEED"])
    cut = module["TRAIN_ROWS"]
    for (alpha, l1_ratio), rmse in rows.items():
        model = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, tol=1e-12, max_iter=100_000)
        errors = model.fit(xs[:cut], ys[:cut]).predict(xs[cut:]) - ys[cut:]
        assert rmse == pytest.approx(math.sqrt((errors**2).mean()), rel=1e-9)
