"""`metrics: {mlflow: true}`: a script that logs with mlflow.log_metric gives its task metrics and a series,
read with MLflow's own client from the task's working directory (batchsweep.task.mlflowmetrics)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import write_spec

import batchsweep
from batchsweep import cli
from batchsweep.model import State
from batchsweep.runs.catalog import list_runs
from batchsweep.task import mlflowmetrics

SCRIPT = Path(__file__).parent / "scripts" / "mlflow_curve.py"

pytestmark = pytest.mark.skipif(mlflowmetrics.missing() is not None,
                                reason="MLflow's client is not installed (pip install 'batchsweep[mlflow]'; "
                                       "`make setup` installs it)")


def _series(store: Path, run_id: str, index: int) -> list[dict]:
    path = store / "runs" / run_id / "tasks" / str(index) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_metrics_and_series_logged_to_mlflow_become_the_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    # A tracking server named in the caller's environment (nothing listens there) does not take the tasks'
    # runs.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    spec = write_spec(tmp_path, f"""
        name: mlf
        script: {SCRIPT}
        params:
          list:
            - {{quality: 0.25}}
            - {{quality: 0.5, folds: 2}}
            - {{quality: 0.125, store: mlruns}}
            - {{quality: 0.5, silent: true}}
        metrics: {{mlflow: true}}
        env: {{MLFLOW_ALLOW_FILE_STORE: "true"}}
    """)
    store = tmp_path / "store"
    assert cli.main(["run", str(spec), "--store", str(store)]) == 0
    err = capsys.readouterr().err
    run = batchsweep.load_run(list_runs(store=str(store))[-1].run_id, store=store)
    df = run.results().set_index("task")
    assert list(df["status"]) == ["succeeded"] * 4
    # The final value of each metric; a parent run's acc wins over its nested folds'; NaN is a missing value.
    assert list(df["val_loss"][:3]) == [0.5, 0.75, 0.375]
    assert list(df["acc"][:3]) == [0.75, 0.5, 0.875]
    assert "nan_metric" not in df.columns
    assert df["outputs"][0] == ["mlflow.db"] and any(o.startswith("mlruns/") for o in df["outputs"][2])
    # The series: every step of the (top-level) run, the step reached in the status.
    points = [(r["step"], r.get("val_loss"), r.get("acc")) for r in _series(store, run.id, 0)]
    assert points == [
        (1, 1.25, None),
        (2, 0.75, None),
        (3, 0.25 + 1 / 3, None),
        (4, 0.5, None),
        (0, None, 0.75),
    ]
    assert [r["step"] for r in _series(store, run.id, 1) if "val_loss" in r] == [1, 2, 3, 4]  # no fold's 99
    statuses = run.statuses()
    assert statuses[0].last_step == 4 and statuses[0].metrics_missing is None
    # A task that logged nothing says so.
    assert statuses[3].metrics_missing == ("no metric was logged to MLflow in the task's working directory "
                                           "(mlflow.db, mlruns/)")
    assert "1 task succeeded without metrics" in err


def test_a_stop_rule_reads_the_mlflow_series_while_the_task_runs(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHSWEEP_SERIES_FLUSH_S", "0.1")
    # The bad task would take 40 s: time for the runner to import MLflow's client and read its store even on a
    # loaded machine (the import alone took 8 s at load 6), while a stopped one ends within seconds.
    spec = write_spec(tmp_path, f"""
        name: mlstop
        script: {SCRIPT}
        params:
          zip: {{quality: [0.1, 3.0], pace: [0.1, 1.0]}}
          fixed: {{epochs: 40}}
        metrics: {{mlflow: true}}
        stop: {{metric: val_loss, rule: threshold, upper: 2.0, min_steps: 2}}
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    statuses = run.statuses()
    assert statuses[0].state is State.SUCCEEDED and statuses[0].last_step == 40
    assert statuses[1].state is State.PRUNED
    # stopped long before the end
    assert statuses[1].last_step is not None and 2 <= statuses[1].last_step < 40
    df = run.results().set_index("task")
    assert df["val_loss"][0] == pytest.approx(0.1 + 1 / 40)


def test_an_mlflow_rule_with_its_own_tracking_uri_or_without_mlflow_is_refused_before_anything_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    body = f"name: mlbad\nscript: {SCRIPT}\nparams: {{grid: {{quality: [0.1]}}}}\nmetrics: {{mlflow: true}}\n"
    store = tmp_path / "store"
    spec = write_spec(tmp_path, body + "env: {MLFLOW_TRACKING_URI: http://mlflow.example:5000}\n")
    assert cli.main(["run", str(spec), "--store", str(store)]) == 2
    assert (
        "env.MLFLOW_TRACKING_URI: with metrics: {mlflow: true} each task logs to a store in its own working "
        "directory"
    ) in capsys.readouterr().err
    monkeypatch.setattr(mlflowmetrics, "NEEDS", ("mlflow", "alembic_not_installed"))
    assert cli.main(["run", str(write_spec(tmp_path, body)), "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert "alembic_not_installed is not installed" in err and "pip install 'batchsweep[mlflow]'" in err
    assert not store.exists()


def test_the_task_image_gets_mlflows_client_unless_the_requirements_have_it(tmp_path: Path) -> None:
    from batchsweep.infra.image import MLFLOW, spec_requirements
    from batchsweep.spec.reader import load

    body = f"name: mlimg\nscript: {SCRIPT}\nparams: {{grid: {{quality: [0.1]}}}}\nmetrics: {{mlflow: true}}\n"
    assert spec_requirements(load(write_spec(tmp_path, body + "requirements: [numpy]\n")))[0] == [
        "numpy",
        *MLFLOW,
    ]
    assert spec_requirements(load(write_spec(tmp_path, body + "requirements: [mlflow==3.18.0]\n")))[0] == \
        ["mlflow==3.18.0"]
    assert spec_requirements(load(write_spec(tmp_path, body + "requirements: [mlflow-skinny]\n")))[0] == \
        ["mlflow-skinny", "sqlalchemy>=1.4", "alembic>=1.8"]



@pytest.fixture(scope="module")
def template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite store whose one run logged acc; made once, as MLflow keeps one store object per URI
    for the life of the process."""
    from mlflow.tracking import MlflowClient

    work = tmp_path_factory.mktemp("template")
    client = MlflowClient(tracking_uri=mlflowmetrics.tracking_uri(work))
    run = client.create_run(client.create_experiment("e"))
    client.log_metric(run.info.run_id, "acc", 0.5)
    mlflowmetrics._release(mlflowmetrics.tracking_uri(work))
    return work / mlflowmetrics.DB


def _store_with(template: Path, work: Path, acc: float) -> None:
    """A copy of the template store in work, its run's acc set to `acc`."""
    import shutil
    import sqlite3

    work.mkdir(parents=True)
    shutil.copy(template, work / mlflowmetrics.DB)
    with sqlite3.connect(work / mlflowmetrics.DB) as db:
        for table in ("metrics", "latest_metrics"):
            db.execute(f"UPDATE {table} SET value = ? WHERE key = 'acc'", (acc,))
    db.close()


def test_a_symlinked_mlflow_store_fails_its_task_and_is_not_read(tmp_path: Path,
                                                                 template_store: Path) -> None:
    """A task plants `mlflow.db` as a symlink to another user's store: its task fails naming it, and the
    victim's metrics never become the task's."""
    victim = tmp_path / "victim"
    _store_with(template_store, victim, 0.99)
    script = tmp_path / "plant.py"
    script.write_text(f"import os\nos.symlink({str(victim / 'mlflow.db')!r}, 'mlflow.db')\n")
    spec = write_spec(tmp_path, f"name: mlplant\nscript: {script}\nparams: {{grid: {{_x: [1]}}}}\n"
                                "metrics: {mlflow: true}\n")
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    status = run.statuses()[0]
    assert status.state is State.FAILED
    assert "mlflow.db in the task's working directory is not a file (a symlink?)" in (status.error or "")
    assert "acc" not in run.results().columns
    assert (victim / "mlflow.db").is_file()


def test_the_mlflow_reader_reads_the_directory_it_holds_not_one_swapped_in(tmp_path: Path,
                                                                          template_store: Path) -> None:
    """The runner reads a task's stores through the working directory it made: a directory renamed into its
    place after the runner opened it is not what MLflow's client reads."""
    import os

    work = tmp_path / "work"
    _store_with(template_store, work, 0.25)
    fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    try:
        work.rename(tmp_path / "moved")
        _store_with(template_store, work, 0.75)
        assert mlflowmetrics.Reader(work, fd).final() == {"acc": 0.25}
        assert mlflowmetrics.Reader(work).final() == {"acc": 0.75}
    finally:
        os.close(fd)
