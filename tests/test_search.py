"""Adaptive search (`search:`): rounds of Optuna trials, each round one submission, resumable after kill
-9."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

import batchsweep
from batchsweep import cli
from batchsweep.engines.local.engine import LocalEngine
from batchsweep.planning import optuna_rounds, search
from batchsweep.spec.schema import Search
from batchsweep.store.core import Store

optuna = pytest.importorskip("optuna")

BRANIN = Path(__file__).parent.parent / "examples" / "branin" / "branin.py"

# Branin with a few knobs: sleeps, fails on a given trial (it declares --trial, so it gets it).
SLOW_BRANIN = """\
import argparse, json, math, sys, time
p = argparse.ArgumentParser()
p.add_argument("--x1", type=float, required=True)
p.add_argument("--x2", type=float, required=True)
p.add_argument("--trial", type=int, required=True)
p.add_argument("--fail_trial", type=int, default=-1)
p.add_argument("--sleep", type=float, default=0.0)
a = p.parse_args()
time.sleep(a.sleep)
if a.trial == a.fail_trial:
    sys.exit(3)
b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
value = (a.x2 - b * a.x1 ** 2 + c * a.x1 - 6) ** 2 + 10 * (1 - t) * math.cos(a.x1) + 10
json.dump({"value": value}, open("metrics.json", "w"))
"""


def write_spec(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def search_spec(script: Path, *, trials: int, batch: int, fixed: str = "{}", extra: str = "") -> str:
    return f"""\
name: search
script: {script}
params: {{fixed: {fixed}}}
search:
  sampler: tpe
  trials: {trials}
  batch: {batch}
  metric: value
  space: {{x1: "uniform(-5, 10)", x2: "uniform(0, 15)"}}
max_parallel: {batch}
{extra}"""


def study_of(store_dir: Path, run_id: str) -> optuna.Study:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    store = Store.open(store_dir)
    path = store.local_path(store.run_key(run_id, search.JOURNAL))
    return optuna.load_study(study_name=run_id, storage=JournalStorage(JournalFileBackend(str(path))))


def test_16_trials_in_rounds_of_4_are_4_submissions_with_trial_and_round_columns(tmp_path, monkeypatch):
    submitted: list[list[int]] = []
    real_submit = LocalEngine.submit

    def spy(self, indices, *, detach):
        submitted.append(list(indices))
        return real_submit(self, indices, detach=detach)

    monkeypatch.setattr(LocalEngine, "submit", spy)
    spec = write_spec(tmp_path, search_spec(BRANIN, trials=16, batch=4))
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    assert submitted == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    df = run.results()
    assert run.exit_code == 0 and run.n_tasks == 16
    assert {"trial", "round", "x1", "x2", "value"} <= set(df.columns)
    assert sorted(df["trial"]) == list(range(16))
    assert Counter(df["round"]) == {0: 4, 1: 4, 2: 4, 3: 4}
    study = study_of(tmp_path / "store", run.id)
    assert len(study.trials) == 16 and study.best_value == pytest.approx(df["value"].min())


def test_a_failing_trial_is_told_fail_and_the_search_goes_on(tmp_path):
    (tmp_path / "branin.py").write_text(SLOW_BRANIN)
    spec = write_spec(
        tmp_path, search_spec(tmp_path / "branin.py", trials=8, batch=4, fixed="{fail_trial: 2}")
    )
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    df = run.results().set_index("trial")
    assert len(df) == 8 and df.loc[2, "status"] == "failed" and df.loc[2, "exit_code"] == 3
    assert (df.drop(index=2)["status"] == "succeeded").all()
    states = {t.number: t.state for t in study_of(tmp_path / "store", run.id).trials}
    assert states[2] == optuna.trial.TrialState.FAIL
    assert Counter(states.values())[optuna.trial.TrialState.COMPLETE] == 7
    assert run.exit_code == 1


def test_a_metric_no_task_reports_stops_the_search_with_one_line(tmp_path, capsys):
    spec = write_spec(
        tmp_path, search_spec(BRANIN, trials=8, batch=4).replace("metric: value", "metric: loss")
    )
    assert cli.main(["run", str(spec), "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: search.metric:") and "'loss'" in err and "value" in err


def _cli(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "BATCHSWEEP_STORE": str(tmp_path / "store"), "CI": "true"}
    return subprocess.Popen([sys.executable, "-m", "batchsweep", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_mid_search_then_resume_ends_with_every_trial_once(tmp_path):
    (tmp_path / "branin.py").write_text(SLOW_BRANIN)
    spec = write_spec(tmp_path, search_spec(tmp_path / "branin.py", trials=16, batch=4, fixed="{sleep: 0.3}"))
    proc = _cli(tmp_path, "run", str(spec))
    store_dir = tmp_path / "store"
    deadline = time.monotonic() + 120
    while len(list(store_dir.glob("runs/*/tasks/*/status.json"))) < 6:
        assert time.monotonic() < deadline, "the search did not reach its second round"
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    store = Store.open(store_dir)
    (run_id,) = store.run_ids()
    before = {i: s.ended_at for i, s in store.statuses(run_id).items()}
    assert 6 <= len(before) < 16
    resume = _cli(tmp_path, "resume", run_id)
    out, err = resume.communicate(timeout=60)
    assert resume.returncode == 0, err
    df = batchsweep.load_run(run_id, store=store_dir).results()
    assert sorted(df["trial"]) == list(range(16)), "a trial was lost or repeated"
    assert set(df["status"]) == {"succeeded"}
    after = store.statuses(run_id)
    assert all(after[i].ended_at == ended for i, ended in before.items()), "a finished trial ran again"
    study = study_of(store_dir, run_id)
    assert [t.number for t in study.trials] == list(range(16))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


@pytest.mark.parametrize(("search_block", "expect"), [
    ("{sampler: bayes, trials: 8, metric: value, space: {x1: 'uniform(0, 1)'}}", "search.sampler"),
    ("{trials: 8, metric: value, space: {x1: 'uniform(1, 0)'}}", "low < high"),
    ("{trials: 8, metric: value, space: {x1: 'normal(0, 1)'}}", "unknown distribution"),
    ("{trials: 0, metric: value, space: {x1: 'uniform(0, 1)'}}", "search.trials"),
    ("{trials: 8, metric: value, space: {trial: 'uniform(0, 1)'}}", "set by batchsweep itself"),
])
def test_bad_search_spec_is_one_line_and_exit_2(tmp_path, capsys, search_block, expect):
    spec = write_spec(tmp_path, f"name: s\nscript: {BRANIN}\nsearch: {search_block}\n")
    assert cli.main(["run", str(spec), "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and expect in err[0], err
    assert not (tmp_path / "store" / "runs").exists() or not os.listdir(tmp_path / "store" / "runs")


def test_search_with_a_grid_is_bad_input(tmp_path, capsys):
    spec = write_spec(
        tmp_path,
        search_spec(BRANIN, trials=8, batch=4).replace("params: {fixed: {}}", "params: {grid: {x3: [1, 2]}}"),
    )
    assert cli.main(["run", str(spec), "--store", str(tmp_path / "store")]) == 2
    assert "may only hold `fixed`" in capsys.readouterr().err


@pytest.mark.parametrize(("sampler", "package"), [("cmaes", "cmaes"), ("gp", "torch")])
def test_a_sampler_whose_packages_are_missing_names_what_to_install(tmp_path, capsys, sampler, package):
    import importlib.util

    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed")
    spec = write_spec(
        tmp_path, search_spec(BRANIN, trials=8, batch=4).replace("sampler: tpe", f"sampler: {sampler}")
    )
    assert cli.main(["run", str(spec), "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"search.sampler: {sampler!r}" in err and f"pip install {package}" in err


def test_optimize_runs_rounds_with_an_in_process_evaluator():
    study = optuna.create_study(direction="minimize")
    spec = Search(sampler="random", trials=12, batch=5, metric="value", space={"x": "uniform(-1, 1)"})
    rounds: list[list[int]] = []

    def evaluate(proposals: list[optuna_rounds.Proposal]) -> list[float | None]:
        rounds.append([p.trial for p in proposals])
        return [None if p.trial == 3 else p.values["x"] ** 2 for p in proposals]

    optuna_rounds.optimize(study, spec, evaluate, batch=5)
    assert rounds == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
    assert study.trials[3].state == optuna.trial.TrialState.FAIL and len(study.trials) == 12


def test_a_search_on_aws_batch_is_one_submit_job_per_round(tmp_path, monkeypatch, aws_env):
    """Against moto (jobs 'succeed' at once without running): each submit plays its own round's containers."""
    from batchsweep.aws import clients
    from batchsweep.engines.aws_batch import AwsBatchEngine
    from batchsweep.infra.stack import up

    session = clients.make_session(region="us-east-1")
    outputs = up("batchsweep", {}, session=session, echo=lambda *_: None, poll_s=0.05)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"digest": "sha256:" + "0" * 64, "size": 1,
                           "mediaType": "application/vnd.docker.container.image.v1+json"}, "layers": []}
    clients.make_client("ecr", session=session).put_image(
        repositoryName=outputs["EcrRepository"], imageManifest=json.dumps(manifest), imageTag="latest")
    submit_jobs: list[int] = []
    real_submit = AwsBatchEngine.submit

    def submit_and_play(self, indices, *, detach):
        real_submit(self, indices, detach=detach)
        record = self.run.store.read_json(self.run.store.run_key(self.run.id, "engine.json"))
        (job,) = record["submissions"][-1]["jobs"]
        submit_jobs.append(len(indices))
        desc = self.batch.describe_jobs(jobs=[job["id"]])["jobs"][0]
        env = {e["name"]: e["value"] for e in desc["container"]["environment"]}
        command = [sys.executable if c == "python" else c for c in desc["container"]["command"]]
        for child in range(job["size"]):
            child_env = {
                **os.environ,
                **env,
                **({"AWS_BATCH_JOB_ARRAY_INDEX": str(child)} if job["size"] > 1 else {}),
            }
            subprocess.run(command, env=child_env, capture_output=True, timeout=120, check=False)

    monkeypatch.setattr(AwsBatchEngine, "submit", submit_and_play)
    spec = write_spec(
        tmp_path,
        search_spec(
            BRANIN,
            trials=6,
            batch=3,
            extra=(
                "backend: aws-batch\naws: {stack: batchsweep, region: us-east-1}\nresources: {vcpus: 0.5, "
                "memory_mib: 1024}\n"
            ),
        ),
    )
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    assert submit_jobs == [3, 3]
    assert run.exit_code == 0
    df = run.results()
    assert sorted(df["trial"]) == list(range(6)) and Counter(df["round"]) == {0: 3, 1: 3}
    assert run.store.backend.exists(run.store.run_key(run.id, search.JOURNAL))
