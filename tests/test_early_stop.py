"""Series (metrics.jsonl) and early stopping (`stop:`) on the local engine, with real processes.

tests/scripts/curve.py prints a known curve per --quality: val_loss = quality + 1/epoch, one epoch every
--pace s. With max_parallel 2 and the median rule (min_trials 2, min_steps 2), tasks 0 and 1 finish first
(nothing to compare with yet); every later task worse than their median is stopped at step 2, every better one
runs to 8."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import write_spec

import batchsweep
from batchsweep.errors import SpecError
from batchsweep.model import State
from batchsweep.store.core import Store
from batchsweep.task.stopping import decide

SCRIPTS = Path(__file__).parent / "scripts"
RULE = r"""'epoch (?P<step>\d+) .*val_loss=(?P<val_loss>[\d.]+)'"""
GRID = "[0.2, 0.3, 0.1, 1.0, 0.15, 2.0]"  # tasks 3 and 5 are hopeless
BAD = {3, 5}
EPOCHS = 12  # a bad task is stopped at step 2, long before the end even on a loaded machine


@pytest.fixture(autouse=True)
def _fast_flush(monkeypatch):
    monkeypatch.setenv("BATCHSWEEP_SERIES_FLUSH_S", "0.05")


def _spec(tmp_path: Path, *, stop: str | None, api: bool = False, grid: str = GRID, pace: float = 0.2,
          name: str = "curves") -> Path:
    return write_spec(tmp_path, f"""
        name: {name}
        script: {SCRIPTS / 'curve.py'}
        params:
          grid: {{quality: {grid}}}
          fixed: {{pace: {pace}, api: {str(api).lower()}, epochs: {EPOCHS}}}
        {'' if api else f'metrics: {{stdout: {RULE}}}'}
        max_parallel: 2
        {f'stop: {stop}' if stop else ''}
    """)


def _series(store: Path, run_id: str, index: int) -> list[dict]:
    path = store / "runs" / run_id / "tasks" / str(index) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


MEDIAN = "{metric: val_loss, rule: median, min_steps: 2, min_trials: 2}"


@pytest.mark.parametrize("api", [False, True], ids=["stdout-rule", "log_metrics"])
def test_median_rule_prunes_the_bad_curves_at_the_expected_step_and_keeps_the_good(tmp_path, api):
    run = batchsweep.run(_spec(tmp_path, stop=MEDIAN, api=api), store=tmp_path / "store", progress=False)
    assert run.exit_code == 0  # pruned is not a failure
    df = run.results().set_index("task")
    assert {i for i in df.index if df.loc[i, "status"] == "pruned"} == BAD
    assert set(df.loc[[i for i in df.index if i not in BAD], "status"]) == {"succeeded"}
    for i in df.index:
        series = _series(tmp_path / "store", run.id, i)
        steps = [r["step"] for r in series]
        quality = df.loc[i, "quality"]
        assert steps == list(range(1, len(steps) + 1))
        assert all(abs(r["val_loss"] - (quality + 1 / r["step"])) < 1e-3 for r in series)
        status = run.store.read_status(run.id, i)
        assert status.last_step == steps[-1]
        # The final value stays. A stopped task may be killed between writing its series line and its
        # metrics.json (log_metrics writes both), so its final value is that of its last or next-to-last step.
        finals = [r["val_loss"] for r in (series[-2:] if i in BAD else series[-1:])]
        assert any(df.loc[i, "val_loss"] == pytest.approx(v, abs=1e-3) for v in finals), (
            df.loc[i, "val_loss"],
            finals,
        )
        if i in BAD:
            assert "pruned at step 2 by the median rule" in status.error
            assert 2 <= status.last_step < EPOCHS
            assert status.exit_code == -15  # SIGTERM to its process group
            assert api or "epoch 2 " in run.logs(i)  # its log is kept
        else:
            assert steps[-1] == EPOCHS and status.error is None


def test_a_rule_that_never_triggers_changes_nothing(tmp_path):
    plain = batchsweep.run(_spec(tmp_path, stop=None, pace=0.02), store=tmp_path / "a", progress=False)
    never = batchsweep.run(_spec(tmp_path, stop="{metric: val_loss, rule: threshold, upper: 100}", pace=0.02),
                           store=tmp_path / "b", progress=False)
    a, b = plain.results(), never.results()
    assert set(b["status"]) == {"succeeded"} and never.exit_code == 0
    cols = ["task", "quality", "status", "val_loss", "last_step"]
    assert a[cols].equals(b[cols])
    for i in range(6):  # without stop: the series is recorded all the same
        def strip(records: list[dict]) -> list[dict]:
            return [{k: v for k, v in r.items() if k != "t"} for r in records]

        assert strip(_series(tmp_path / "a", plain.id, i)) == strip(_series(tmp_path / "b", never.id, i))


def _cli(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "BATCHSWEEP_STORE": str(tmp_path / "store"), "CI": "true"}
    return subprocess.Popen([sys.executable, "-m", "batchsweep", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_series(store: Path, timeout: float = 120) -> Path:
    """Task 0's series file once it holds two steps (the task is still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(store.glob("runs/*/tasks/0/metrics.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 2:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("no series while the task ran")


def test_series_is_flushed_while_the_task_runs_and_results_mark_it_partial(tmp_path):
    # The task holds after epoch 2 until `results` has read it: still running then, however loaded the box.
    release = tmp_path / "release"
    spec = _spec(tmp_path, stop=None, grid="[0.5]", pace=0.05)
    spec.write_text(spec.read_text().replace("fixed: {", f"fixed: {{hold: '{release}', "))
    proc = _cli(tmp_path, "run", str(spec))
    try:
        store = tmp_path / "store"
        found = [_wait_for_series(store)]
        run_id = found[0].parts[-4]
        assert not (found[0].parent / "status.json").exists()  # still running
        df = batchsweep.load_run(run_id, store=store).results()
        assert bool(df.loc[0, "partial"]) and df.loc[0, "last_step"] == 2
        assert df.loc[0, "val_loss"] == pytest.approx(0.5 + 1 / 2, abs=1e-3)
    finally:
        release.touch()
        proc.communicate(timeout=120)
    df = batchsweep.load_run(run_id, store=store).results()
    assert "partial" not in df.columns and df.loc[0, "last_step"] == EPOCHS


def test_kill_9_of_the_runner_then_resume_keeps_every_series(tmp_path):
    grid = "[0.2, 0.3, 0.1, 1.0, 0.15, 2.0, 0.12, 1.5]"
    proc = _cli(tmp_path, "run", str(_spec(tmp_path, stop=MEDIAN, grid=grid)))
    store = tmp_path / "store"
    deadline = time.monotonic() + 60
    while len(list(store.glob("runs/*/tasks/*/status.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    (run_id,) = Store.open(store).run_ids()
    before = {i: (s.state, s.ended_at) for i, s in Store.open(store).statuses(run_id).items()}
    assert 3 <= len(before) < 8
    resume = _cli(tmp_path, "resume", run_id)
    _, err = resume.communicate(timeout=120)
    assert resume.returncode == 0, err
    run = batchsweep.load_run(run_id, store=store)
    statuses = run.statuses()
    assert {i for i, s in statuses.items() if s.state is State.PRUNED} == {3, 5, 7}
    for i, (state, ended) in before.items():
        assert statuses[i].ended_at == ended, f"task {i} ({state.value}) ran again"
    for i, s in statuses.items():
        steps = [r["step"] for r in _series(store, run_id, i)]
        assert steps == list(range(1, s.last_step + 1)) and s.last_step == (
            EPOCHS if s.state is State.SUCCEEDED else steps[-1]
        )


def test_search_with_pruning_tells_optuna_the_trial_was_pruned(tmp_path):
    spec = write_spec(tmp_path, f"""
        name: search-prune
        script: {SCRIPTS / 'curve.py'}
        params: {{fixed: {{pace: 0.2, epochs: 8}}}}
        metrics: {{stdout: {RULE}}}
        search: {{sampler: random, trials: 8, batch: 2, metric: val_loss, direction: minimize, seed: 3,
                  space: {{quality: 'uniform(0.0, 2.0)'}}}}
        stop: {{metric: val_loss, rule: median, min_steps: 1, min_trials: 2}}
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    assert run.exit_code == 0
    df = run.results().set_index("task")
    import optuna

    from batchsweep.planning.search import StudyFile

    study = StudyFile(run).open()
    trials = {t.number: t for t in study.get_trials()}
    pruned_tasks = {int(df.loc[i, "trial"]) for i in df.index if df.loc[i, "status"] == "pruned"}
    assert pruned_tasks, "some trials must be worse than the median of the finished ones"
    assert {n for n, t in trials.items() if t.state is optuna.trial.TrialState.PRUNED} == pruned_tasks
    for n in pruned_tasks:
        assert trials[n].intermediate_values  # the series reached Optuna
    assert study.best_trial.state is optuna.trial.TrialState.COMPLETE
    assert len(trials) == 8


# -- the decision itself --------------------------------------------------------------------------
def _curve(q: float, steps: int) -> dict[int, float]:
    return {s: q + 1 / s for s in range(1, steps + 1)}


def test_decide_is_a_pure_function_of_the_series_and_states():
    stop = {"metric": "val_loss", "direction": "minimize", "rule": "median", "min_steps": 2, "min_trials": 2}
    series = {0: _curve(0.2, 8), 1: _curve(0.3, 8), 2: _curve(1.0, 2)}
    states = {0: State.SUCCEEDED, 1: State.SUCCEEDED}
    first = decide(stop, "r", 2, series, states)
    assert first is not None and first.step == 2
    assert decide(stop, "r", 2, series, states) == first
    assert decide(stop, "r", 2, {**series, 2: _curve(1.0, 1)}, states) is None  # before min_steps
    assert decide(stop, "r", 2, {**series, 2: _curve(0.1, 2)}, states) is None  # better than the median
    assert decide(stop, "r", 2, series, {0: State.SUCCEEDED}) is None  # fewer finished tasks than min_trials
    assert decide({**stop, "direction": "maximize"}, "r", 2, series, states) is None


def test_threshold_halving_and_hyperband_rules_decide_with_optunas_pruners():
    threshold = {"metric": "m", "rule": "threshold", "upper": 1.2, "min_steps": 0}
    assert decide(threshold, "r", 0, {0: {1: 1.1}}, {}) is None
    assert decide(threshold, "r", 0, {0: {1: 1.1, 2: 1.3}}, {}).step == 2
    halving = {
        "metric": "m",
        "direction": "minimize",
        "rule": "halving",
        "min_steps": 1,
        "reduction_factor": 2,
    }
    finished = {i: _curve(0.1 * i, 8) for i in range(4)}
    states = {i: State.SUCCEEDED for i in range(4)}
    assert decide(halving, "r", 4, {**finished, 4: _curve(5.0, 1)}, states).step == 1
    assert decide(halving, "r", 4, {**finished, 4: _curve(0.0, 4)}, states) is None
    hyperband = {**halving, "rule": "hyperband", "max_steps": 8}
    verdicts = [decide(hyperband, "r", 4, {**finished, 4: _curve(q, 8)}, states) for q in (0.0, 5.0)]
    assert verdicts[0] is None and verdicts[1] is not None


@pytest.mark.parametrize(
    "rule, path",
    [
        ("halving", "records"),
        ("hyperband", "records"),
        ("halving", "replay"),
        ("hyperband", "replay"),
        ("median", "records"),
    ],
)
def test_decide_agrees_with_a_live_optuna_study_at_every_step_of_every_task(rule, path, monkeypatch):
    """The run as Optuna itself would run it: every task a trial of one study, all running at once, each
    reporting a step and asking `should_prune` in turn (Optuna's public API only). `decide`, given only what
    the store would hold at that moment (every series so far, the tasks that ended), must say the same at
    every check, by either path: the records written in Optuna's private format, or the replay through its
    public API. A change in how Optuna's pruners keep their records (rungs, brackets) fails here, not silently
    in a sweep."""
    import random

    import optuna
    from optuna.trial import TrialState

    from batchsweep.task import stopping
    from batchsweep.task.stopping import STUDY_PREFIX, pruner

    assert stopping._records_hooks() is not None, "Optuna renamed the pruner records the fast path writes"
    if path == "replay":
        monkeypatch.setattr(stopping, "_records_hooks", lambda: None)
    steps, n = 16, 14
    rng = random.Random(3)
    # Curves that cross: a task that starts badly may end well, so early and late rankings differ.
    shape = [(rng.uniform(0.0, 1.0), rng.uniform(0.2, 3.0), rng.uniform(0.0, 0.05)) for _ in range(n)]
    curves = {
        i: {s: q + a / s + rng.uniform(0, noise) for s in range(1, steps + 1)}
        for i, (q, a, noise) in enumerate(shape)
    }
    stop = {"metric": "m", "direction": "minimize", "rule": rule, "min_steps": 1, "reduction_factor": 2,
            "max_steps": steps, "min_trials": 3}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        live = optuna.create_study(
            study_name=STUDY_PREFIX + "live",
            direction="minimize",
            pruner=pruner(stop),
            sampler=optuna.samplers.RandomSampler(seed=0),
        )
        trials = [live.ask() for _ in range(n)]
        reached: dict[int, dict[int, float]] = {i: {} for i in range(n)}
        ended: dict[int, State] = {}
        pruned_at = {}
        for step in range(1, steps + 1):
            for i in range(n):
                if i in ended:
                    continue
                trials[i].report(curves[i][step], step)
                reached[i][step] = curves[i][step]
                verdict = trials[i].should_prune()
                ours = decide(stop, "live", i, {k: dict(v) for k, v in reached.items() if v}, dict(ended))
                assert (ours is not None) == verdict, f"task {i} at step {step}: Optuna says {verdict}"
                if verdict:
                    live.tell(trials[i], state=TrialState.PRUNED)
                    ended[i], pruned_at[i] = State.PRUNED, step
                elif step == steps:
                    live.tell(trials[i], curves[i][step])
                    ended[i] = State.SUCCEEDED
    finally:
        optuna.logging.set_verbosity(optuna.logging.INFO)
    assert pruned_at and len(pruned_at) < n  # the comparison covered both verdicts
    if rule != "median":
        assert len(set(pruned_at.values())) > 1  # and pruning at more than one rung


def test_stop_needs_a_series_and_a_metric_the_rule_reads(tmp_path):
    base = f"""
        name: bad
        script: {SCRIPTS / 'curve.py'}
        params: {{grid: {{quality: [1]}}}}
    """
    cases = {
        "metrics: {stdout: 'val_loss=(?P<val_loss>[0-9.]+)'}\nstop: {metric: val_loss}": "needs a series",
        f"metrics: {{stdout: {RULE}}}\nstop: {{metric: loss}}": "not a group of the metrics rule",
        f"metrics: {{stdout: {RULE}}}\nstop: {{metric: val_loss, rule: threshold}}": "lower: X or upper: Y",
        f"metrics: {{stdout: {RULE}}}\nstop: {{metric: val_loss, rule: hyperband}}": "max_steps",
        "stop: {metric: quux, rule: median}": "does not say whether lower or higher",
    }
    for extra, message in cases.items():
        path = write_spec(
            tmp_path, base.rstrip(" ") + "\n".join("        " + line for line in extra.splitlines())
        )
        with pytest.raises(SpecError, match=message):
            batchsweep.plan(path)


def test_status_and_report_show_what_stopping_saved_and_the_curves(tmp_path, capsys):
    from batchsweep import cli

    run = batchsweep.run(_spec(tmp_path, stop=MEDIAN), store=tmp_path / "store", progress=False)
    statuses = run.statuses()
    assert cli.main(["status", run.id, "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    line = next(li for li in out.splitlines() if li.startswith("stopping"))
    import statistics

    from batchsweep.text import duration

    full = statistics.median(s.duration_s for i, s in statuses.items() if i not in BAD)
    saved = sum(full - statuses[i].duration_s for i in BAD)
    assert (
        "median rule on val_loss (minimize) · 2 pruned" in line
        and f"~{duration(saved)} of task time saved" in line
    )
    report = tmp_path / "r.html"
    assert cli.main(["report", run.id, "-o", str(report), "--store", str(tmp_path / "store")]) == 0
    html = report.read_text()
    import re

    lines = re.findall(r'<polyline points="([^"]+)" class="(curve(?: pruned)?)" data-task="(\d+)"><title>'
                       r"task \d+ \(quality=[^)]+\): ([^<]+)</title>", html)
    assert sorted((int(i), cls) for _, cls, i, _ in lines) == [
        (i, "curve pruned" if i in BAD else "curve") for i in range(6)]
    for points, _, i, tip in lines:  # drawn up to where it stopped, and why, on hover
        assert len(points.split()) == statuses[int(i)].last_step
        assert (f"pruned at step {statuses[int(i)].last_step}" in tip) == (int(i) in BAD), tip
    marks = re.findall(r'<circle [^>]*class="prune-mark" data-task="(\d+)"><title>[^<]*pruned at step', html)
    assert sorted(map(int, marks)) == sorted(BAD)
    why = re.findall(r'<td class="why" data-v="([^"]*)">', html)  # the table says it too
    assert sum("pruned at step" in w for w in why) == len(BAD)
    assert "saved by stopping" in html


def test_status_watch_shows_each_running_tasks_latest_step_value_and_best(tmp_path, capsys):
    from batchsweep import cli

    proc = _cli(tmp_path, "run", str(_spec(tmp_path, stop=None, grid="[0.5]", pace=0.3)), "--detach")
    proc.communicate(timeout=30)
    store = tmp_path / "store"
    _wait_for_series(store)
    assert cli.main(["status", "--watch", "--store", str(store)]) == 0  # returns when the run ends
    out = capsys.readouterr().out
    assert "running tasks" in out
    row = next(li for li in out.splitlines() if li.strip().startswith("0 ") and "quality=0.5" in li)
    step, value, best = row.split()[1:4]
    assert (
        int(step) >= 2
        and float(value) == pytest.approx(0.5 + 1 / int(step), abs=1e-3)
        and float(best) == float(value)
    )
    assert "state    finished" in out  # the last frame, after the run ended


# -- what deciding costs in S3 requests ---------------------------------------------------------------
def _s3_run(session, tasks: dict[int, tuple[int, bool]]):
    """An S3 store in moto holding run r1: task -> (steps of its series, finished); S3 calls counted by a
    hook."""
    from batchsweep.aws.clients import make_client

    make_client("s3", session=session).create_bucket(Bucket="stops")
    store = Store.open("s3://stops/batchsweep")
    for index, (steps, finished) in tasks.items():
        _put_task(store, index, steps, finished)
    calls: list[str] = []
    store.backend.client.meta.events.register("before-call.s3.*",
                                              lambda model, **_: calls.append(model.name))
    return store, calls


def _put_task(store, index: int, steps: int, finished: bool) -> None:
    lines = "".join(
        json.dumps({"step": s, "val_loss": 1 + index + 1 / s}) + "\n" for s in range(1, steps + 1)
    )
    store.backend.write_bytes(store.task_key("r1", index, "metrics.jsonl"), lines.encode())
    store.backend.write_bytes(store.task_key("r1", index, "stdout.log"), b"epoch ...")
    if finished:
        store.backend.write_bytes(
            store.task_key("r1", index, "outputs/metrics.jsonl"), b"a task's own output"
        )
        store.backend.write_bytes(store.task_key("r1", index, "status.json"), json.dumps(
            {"index": index, "state": "succeeded", "last_step": steps}).encode())


def test_on_s3_listings_are_spaced_and_back_off_while_nothing_changes(session):
    from batchsweep.task.stopping import MAX_BACKOFF, RunView

    store, calls = _s3_run(session, {0: (8, True), 1: (8, True), 2: (3, False)})
    now = [0.0]
    view = RunView(store, "r1", "val_loss", running_too=False, every=5.0, clock=lambda: now[0])
    series, states = view.refresh(own=9)
    # a running one: not read
    assert set(series) == {0, 1} and states == {0: State.SUCCEEDED, 1: State.SUCCEEDED}
    assert calls.count("ListObjectsV2") == 1 and calls.count("GetObject") == 4
    listed_at = []
    for t in range(0, 200):  # a check every second for 200 s, nothing changing
        now[0] = float(t)
        before = calls.count("ListObjectsV2")
        view.refresh(own=9)
        if calls.count("ListObjectsV2") > before:
            listed_at.append(t)
    gaps = [b - a for a, b in zip([0, *listed_at], listed_at)]
    # one flush after a listing that brought something, then 2, 4, and at most MAX_BACKOFF flushes apart
    assert gaps[:4] == [5, 10, 20, 5 * MAX_BACKOFF] and set(gaps[3:]) == {5 * MAX_BACKOFF}
    assert calls.count("GetObject") == 4  # finished tasks are read once
    _put_task(store, 3, 8, True)  # something new: read at the next listing, and the spacing starts again
    now[0] += 5 * MAX_BACKOFF
    series, states = view.refresh(own=9)
    assert 3 in series and states[3] is State.SUCCEEDED and calls.count("GetObject") == 6
    assert view._next_listing == now[0] + 5


def test_a_container_shares_its_view_between_tasks_and_rereads_a_running_series_only_when_it_grew(session):
    from batchsweep.task.stopping import RunView, Stopper

    store, calls = _s3_run(session, {0: (8, True), 1: (8, True), 2: (3, False)})
    view = RunView(store, "r1", "val_loss", running_too=True, every=0.0)  # hyperband reads running tasks too
    stop = {"metric": "val_loss", "rule": "hyperband", "min_steps": 1, "max_steps": 8, "reduction_factor": 2}
    first = Stopper(stop, store, "r1", 5, view=view)
    first.check([{"step": 1, "val_loss": 0.5}])
    gets = calls.count("GetObject")
    assert gets == 5  # two finished tasks (status + series) and the running one's series
    first.check([{"step": 1, "val_loss": 0.5}, {"step": 2, "val_loss": 0.4}])
    assert calls.count("GetObject") == gets  # nothing changed: nothing read
    _put_task(store, 2, 4, False)  # the running task reported a step
    second = Stopper(stop, store, "r1", 6, view=view)  # the container's next task
    second.check([{"step": 1, "val_loss": 0.5}])
    assert calls.count("GetObject") == gets + 1  # only the series that grew
    assert view.refresh(own=6)[0][2] == {s: 3 + 1 / s for s in range(1, 5)}


def test_a_threshold_rule_and_steps_before_min_steps_read_nothing(session):
    from batchsweep.task.stopping import RunView, Stopper

    store, calls = _s3_run(session, {0: (8, True)})
    view = RunView(store, "r1", "val_loss", running_too=False)
    threshold = Stopper({"metric": "val_loss", "rule": "threshold", "upper": 2.0}, store, "r1", 5, view=view)
    assert threshold.check([{"step": 1, "val_loss": 1.0}]) is None
    assert threshold.check([{"step": 1, "val_loss": 1.0}, {"step": 2, "val_loss": 3.0}]).step == 2
    median = Stopper({"metric": "val_loss", "rule": "median", "min_steps": 3}, store, "r1", 6, view=view)
    median.check([{"step": s, "val_loss": 1.0} for s in (1, 2)])
    assert calls == []  # neither listed nor read the run
    median.check([{"step": s, "val_loss": 1.0} for s in (1, 2, 3)])
    assert calls.count("ListObjectsV2") == 1


def test_on_s3_a_view_with_too_few_finished_tasks_for_the_rule_lists_again_at_the_next_read(session):
    """Median with min_trials 3 and two tasks finished: nothing can be decided, so the next check a read later
    lists again (and sees the third finish) instead of waiting out the spaced listing; once the rule has its
    tasks, listings are spaced as before."""
    from batchsweep.task.stopping import RunView

    store, calls = _s3_run(session, {0: (8, True), 1: (8, True), 2: (3, False)})
    now = [0.0]
    view = RunView(store, "r1", "val_loss", running_too=False, every=5.0, soon=1.0, clock=lambda: now[0])
    assert set(view.refresh(own=9, need=3)[1]) == {0, 1}
    now[0] = 0.5
    view.refresh(own=9, need=3)
    assert calls.count("ListObjectsV2") == 1  # a read's interval at least between two listings
    _put_task(store, 2, 8, True)
    now[0] = 1.0
    assert set(view.refresh(own=9, need=3)[1]) == {0, 1, 2}
    assert calls.count("ListObjectsV2") == 2
    for t in (2.0, 3.0, 4.0):  # three finished: the rule can decide, the spaced listing is back
        now[0] = t
        view.refresh(own=9, need=3)
    assert calls.count("ListObjectsV2") == 2
    now[0] = 6.0
    view.refresh(own=9, need=3)
    assert calls.count("ListObjectsV2") == 3


def test_on_s3_a_tasks_first_decision_sees_the_tasks_finished_before_it(session):
    """Spaced listings would leave a task's first decision with an old view (fewer finished tasks than the
    local engine's decision at that step sees): the first decision lists again unless the last listing is a
    read old; its later decisions keep to the spaced listings."""
    from batchsweep.task.stopping import RunView, Stopper

    store, calls = _s3_run(session, {0: (8, True), 1: (8, True)})
    now = [0.0]
    view = RunView(store, "r1", "val_loss", running_too=False, every=5.0, soon=1.0, clock=lambda: now[0])
    stop = {"metric": "val_loss", "rule": "median", "min_steps": 2, "min_trials": 1}
    Stopper(stop, store, "r1", 5, view=view).check([{"step": s, "val_loss": 9.0} for s in (1, 2)])
    assert calls.count("ListObjectsV2") == 1
    _put_task(store, 2, 8, True)  # finished after that listing, within its spacing
    now[0] = 2.0
    second = Stopper(stop, store, "r1", 6, view=view)
    second.check([{"step": 1, "val_loss": 0.5}, {"step": 2, "val_loss": 0.5}])
    assert calls.count("ListObjectsV2") == 2 and 2 in view.refresh(own=6)[1]
    now[0] = 3.0
    second.check([{"step": s, "val_loss": 0.5} for s in (1, 2, 3)])  # a later decision: spaced
    assert calls.count("ListObjectsV2") == 2


def _held_listing(store):
    """The store's listing held until `gate` is set; `listing` is set once one has begun."""
    import threading

    gate, listing = threading.Event(), threading.Event()
    real = store.backend.list_sizes

    def slow_list(prefix):
        listing.set()
        assert gate.wait(30)
        return real(prefix)

    store.backend.list_sizes = slow_list
    return gate, listing


def test_on_s3_a_shared_view_lists_behind_the_decision_and_knows_its_own_finished_tasks(session):
    """A container's view (`shared_view`) makes its spaced listings in a thread of its own: a decision does
    not wait for S3, it reads what the last listing saw. A task the container finished is in its view
    without a request."""

    from batchsweep.model import TaskStatus
    from batchsweep.task.stopping import RunView

    store, calls = _s3_run(session, {0: (8, True)})
    gate, listing = _held_listing(store)
    now = [0.0]
    view = RunView(store, "r1", "val_loss", running_too=False, every=5.0, soon=1.0, background=True,
                   clock=lambda: now[0])
    view.prefetch(own=9)  # a task starts: listed behind it
    assert listing.wait(30)
    series, states = view.refresh(own=9)  # due, but a listing is under way: what the view has, at once
    assert (series, states) == ({}, {})
    gate.set()
    view._behind.join(30)
    assert view.refresh(own=9)[1] == {0: State.SUCCEEDED}
    before = list(calls)
    view.saw(4, TaskStatus(index=4, state=State.SUCCEEDED), {1: 0.5, 2: 0.4})
    series, states = view.refresh(own=9)
    assert series[4] == {1: 0.5, 2: 0.4} and states[4] is State.SUCCEEDED and calls == before


def test_on_s3_a_first_decision_takes_the_answer_of_the_listing_under_way(session):
    """The prefetch of a task's first decision is still listing when the decision comes: the decision waits
    for its answer instead of listing again."""
    import threading

    from batchsweep.task.stopping import RunView

    store, calls = _s3_run(session, {0: (8, True)})
    gate, listing = _held_listing(store)
    view = RunView(store, "r1", "val_loss", running_too=False, every=5.0, soon=1.0, background=True,
                   clock=lambda: 0.0)  # a loaded machine's pauses do not age the prefetch's listing
    view.prefetch(own=9)
    assert listing.wait(30)
    answer: list = []
    deciding = threading.Thread(target=lambda: answer.append(view.refresh(own=9, fresh=True)))
    deciding.start()
    gate.set()
    deciding.join(30)
    assert answer[0][1] == {0: State.SUCCEEDED} and view.listings == 1
