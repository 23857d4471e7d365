"""One set of behaviours, every engine: local, Dask (a real scheduler), AWS Batch (moto, containers played here),
Slurm (a real one-node cluster) and the toy engine registered from outside the package. A new engine is one more `Harness`.

Each behaviour is checked on the rows `results()` returns and on the store, never on an engine's own report.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dask_fixtures import *  # noqa: F401,F403 - the dask_cluster fixture
from helpers import alive

import batchsweep
from batchsweep import cli
from batchsweep.errors import SweepError
from batchsweep.planning import plan as planning
from batchsweep.runs import run as runs
from batchsweep.runs.run import Run

SCRIPTS = Path(__file__).parent.parent / "scripts"
TOY = Path(__file__).parent / "toy"

FLAKY = '''
import argparse, json, os, sys, time
p = argparse.ArgumentParser()
p.add_argument("--a", type=int)
p.add_argument("--marks", default="")
p.add_argument("--flaky_on", type=int, default=-1)
p.add_argument("--fail_on", type=int, default=-1)
p.add_argument("--sleep_on", type=int, default=-1)
p.add_argument("--hang_on", type=int, default=-1)
args = p.parse_args()
print(f"task a={args.a} says hello", flush=True)
print(f"task a={args.a} warns", file=sys.stderr, flush=True)
if args.a == args.hang_on:
    open(os.path.join(args.marks, f"{args.a}.pid"), "w").write(str(os.getpid()))
    hung = os.path.join(args.marks, f"{args.a}.hung")
    if not os.path.exists(hung):  # the first time only: hang until released
        open(hung, "w").close()
        print(f"task a={args.a} hangs", flush=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(args.marks, "release")) and time.monotonic() < deadline:
            time.sleep(0.05)
if args.a == args.fail_on:
    print(f"bad a={args.a}", file=sys.stderr)
    sys.exit(3)
if args.a == args.flaky_on:
    mark = os.path.join(args.marks, f"{args.a}.tried")
    if not os.path.exists(mark):
        open(mark, "w").close()
        sys.exit(5)
if args.a == args.sleep_on:
    time.sleep(60)
json.dump({"square": args.a * args.a}, open("metrics.json", "w"))
if args.marks:
    open(os.path.join(args.marks, f"{args.a}.done"), "w").close()
'''


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment for a `batchsweep` process of the test's own (the AWS endpoint, PYTHONPATH)."""
    src = str(Path(batchsweep.__file__).parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*extra.values(), src]), "PYTHONUNBUFFERED": "1"}


def kill_9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


class Harness:
    """How a test drives one engine: to the end of a run, or into one of its harder moments."""

    name = ""
    block = ""  # spec lines that select the engine
    runner_runs_tasks = True  # the process a kill -9 takes away runs the tasks (AWS: Batch runs them)

    def __init__(self, store: Path) -> None:
        self.store = store
        self.marks = store.parent / "marks"  # where the tasks of FLAKY leave their marks (see `sweep`)

    def start(self, spec: Path) -> Run:
        """Start the run and return at once, its tasks running."""
        return batchsweep.run(spec, store=self.store, detach=True)

    def finish(self, run: Run) -> Run:
        """Wait for a started run to end, as `batchsweep wait` would."""
        again = batchsweep.load_run(run.id, store=self.store)
        again.wait(progress=False)
        return batchsweep.load_run(run.id, store=self.store)

    def cancel(self, run: Run) -> None:
        """Cancel a running run, as `batchsweep cancel` would from another process."""
        batchsweep.load_run(run.id, store=self.store).cancel()

    def runner_cli(self, spec: Path) -> subprocess.Popen[bytes]:
        """`batchsweep run SPEC` in a process of its own: the runner a kill -9 takes away."""
        return subprocess.Popen([sys.executable, "-m", "batchsweep", "run", str(spec), "--store", str(self.store)],
                                env=cli_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def kill_runner(self, spec: Path, ready: Callable[[], bool]) -> Run:
        """Start the run, wait until `ready()`, kill -9 the process that drives it; returns the run."""
        proc = self.runner_cli(spec)
        try:
            wait_for(ready, "the run to get going")
        finally:
            kill_9(proc)
        return batchsweep.load_run(store=self.store)

    def lose_a_task(self, spec: Path, index: int) -> Run:
        """Run to the end with task `index` (which hangs, if it starts) ending without a status, the way this
        engine can lose one."""
        raise NotImplementedError

    def run(self, spec: Path) -> Run:
        run = batchsweep.run(spec, store=self.store, progress=False)
        return batchsweep.load_run(run.id, store=self.store)

    def resume(self, run: Run) -> Run:
        run = batchsweep.load_run(run.id, store=self.store)
        run.resume()
        run.wait(progress=False)
        return batchsweep.load_run(run.id, store=self.store)


class Local(Harness):
    name = "local"
    block = "backend: local\n"

    def kill_runner(self, spec: Path, ready: Callable[[], bool]) -> Run:
        run = self.start(spec)  # the detached runner, `python -m batchsweep.engines.local.engine`
        wait_for(ready, "the run to get going")
        pid = json.loads((self.store / "runs" / run.id / "engine.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not alive(pid), "the runner to die")
        return batchsweep.load_run(run.id, store=self.store)

    def lose_a_task(self, spec: Path, index: int) -> Run:
        pytest.skip("the local runner waits on every task's process and writes its status however it ends (a "
                    "SIGKILLed task is failed); a task has no status only when its runner died: the kill -9 case")


class Toy(Harness):
    name = "serial"
    block = "backend: serial\n"

    def start(self, spec: Path) -> Run:
        return runs.start(planning.plan(spec), store=self.store)  # its thread runs in this process

    def finish(self, run: Run) -> Run:
        run.wait(progress=False)
        return batchsweep.load_run(run.id, store=self.store)

    def cancel(self, run: Run) -> None:
        run.cancel()  # the driver is this process (as Ctrl-C does)

    def runner_cli(self, spec: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "batchsweep", "run", str(spec), "--store", str(self.store)],
                                env=cli_env(toy=str(TOY)), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def lose_a_task(self, spec: Path, index: int) -> Run:
        pytest.skip("the serial engine runs each task in a process it waits on and writes its status however it "
                    "ends; a task has no status only when its driver died: the kill -9 case")


class Dask(Harness):
    name = "dask"

    def __init__(self, store: Path, address: str) -> None:
        super().__init__(store)
        self.block = f'backend: dask\ndask: {{scheduler: "{address}"}}\n'

    def lose_a_task(self, spec: Path, index: int) -> Run:
        # The worker's own code fails before the task's script runs (its directory cannot be made): Dask sees
        # the future fail and no status is written.
        plan = planning.plan(spec)
        blocker = self.store / "runs" / plan.info["run_id"] / "tasks" / str(index)
        blocker.parent.mkdir(parents=True)
        blocker.write_text("a file where the task's directory goes")
        run = runs.start(plan, store=self.store)
        run.wait(progress=False)
        blocker.unlink()
        return batchsweep.load_run(run.id, store=self.store)


class AwsBatch(Harness):
    """Batch runs the containers whatever happens to the submitter: the player stands in for it (every child of the
    latest submission, played here; a TerminateJob stops them as ECS would)."""

    name = "aws-batch"
    runner_runs_tasks = False
    block = "backend: aws-batch\naws: {stack: batchsweep, region: us-east-1}\nresources: {vcpus: 0.5, memory_mib: 1024}\n"

    def __init__(self, store: Path) -> None:
        super().__init__(store)
        self.playing: threading.Thread | None = None

    def play_in_background(self, run: Run) -> None:
        from batchsweep.emulator import player

        self.playing = threading.Thread(target=player.play, args=(batchsweep.load_run(run.id, store=self.store),),
                                        daemon=True)
        self.playing.start()

    def start(self, spec: Path) -> Run:
        run = batchsweep.run(spec, store=self.store, detach=True)
        self.play_in_background(run)
        return run

    def finish(self, run: Run) -> Run:
        assert self.playing is not None
        self.playing.join(timeout=120)
        assert not self.playing.is_alive(), "the played containers did not end"
        return batchsweep.load_run(run.id, store=self.store)

    def kill_runner(self, spec: Path, ready: Callable[[], bool]) -> Run:
        # No runner runs the tasks: the submitter (`batchsweep run`, attached, polling Batch) dies once its jobs
        # are submitted, and Batch runs them all the same.
        def submitted() -> bool:
            try:
                run = batchsweep.load_run(store=self.store)
            except SweepError:
                return False  # no run yet
            return run.store.read_record(run.store.engine_record_key(run.id)) is not None

        proc = self.runner_cli(spec)
        try:
            wait_for(submitted, "the submission")
        finally:
            kill_9(proc)
        run = batchsweep.load_run(store=self.store)
        self.play_in_background(run)
        wait_for(ready, "the run to get going")
        (self.marks / "release").touch()  # Batch runs every container to its end, submitter or not
        return batchsweep.load_run(run.id, store=self.store)

    def resume(self, run: Run) -> Run:
        if self.playing is not None:  # the jobs of the first submission end first (`resume` needs an ended run)
            self.finish(run)
        from batchsweep.emulator import player

        run = batchsweep.load_run(run.id, store=self.store)
        run.resume(detach=True)
        player.play(batchsweep.load_run(run.id, store=self.store))  # the resume's submission, every child
        return batchsweep.load_run(run.id, store=self.store)

    def lose_a_task(self, spec: Path, index: int) -> Run:
        from batchsweep.emulator import player

        # The container of the child that runs task `index` dies while the task hangs (SIGKILL, no SIGTERM: a lost
        # host), so its worker never writes the status; Batch reports the child ended.
        # Played on fresh interpreters (`fork=False`), as the image test does: one conformance path never goes
        # through the player's zygote (batchsweep.emulator.zygote), which every other played child here does.
        run = batchsweep.run(spec, store=self.store, detach=True)
        played = player.play(run, kill_when=lambda line: f"[task {index}]" in line and "hangs" in line, fork=False)
        assert not any(p.forked for p in played)
        return batchsweep.load_run(run.id, store=self.store)

    def run(self, spec: Path) -> Run:
        from batchsweep.emulator import player

        run = batchsweep.run(spec, store=self.store, detach=True)
        player.play(run)
        return batchsweep.load_run(run.id, store=self.store)


class Slurm(Harness):
    """Slurm runs the array tasks whatever happens to the submitter, which returns once they are submitted."""

    name = "slurm"
    runner_runs_tasks = False
    block = "backend: slurm\n"

    def kill_runner(self, spec: Path, ready: Callable[[], bool]) -> Run:
        proc = self.runner_cli(spec)  # `batchsweep run` returns once submitted: killed then, or already gone
        try:
            wait_for(lambda: proc.poll() is not None or (self.store / "runs").is_dir()
                     and any(self.store.glob("runs/*/engine.json")), "the submission")
        finally:
            kill_9(proc)
        wait_for(ready, "the run to get going", timeout=60)
        (self.marks / "release").touch()
        return batchsweep.load_run(store=self.store)

    def lose_a_task(self, spec: Path, index: int) -> Run:
        # kill -9 of the array task's job step (its worker and the task it runs): no status is ever written.
        run = batchsweep.run(spec, store=self.store, detach=True)
        wait_for((self.marks / f"{index + 1}.hung").exists, "the task to hang", timeout=60)
        task = int((self.marks / f"{index + 1}.pid").read_text())
        worker = int(next(line.split()[1] for line in Path(f"/proc/{task}/status").read_text().splitlines()
                          if line.startswith("PPid:")))
        assert "batchsweep.worker" in Path(f"/proc/{worker}/cmdline").read_text()
        for pid in (worker, task):
            os.kill(pid, signal.SIGKILL)
        return self.finish(run)

    def resume(self, run: Run) -> Run:
        run = self.finish(run)  # `resume` needs the first submission's array tasks gone
        run.resume(detach=True)
        return self.finish(run)


@pytest.fixture(params=["local", "serial", "dask", "aws-batch", "slurm"])
def engine(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    store = tmp_path / "store"
    if request.param == "local":
        yield Local(store)
    elif request.param == "serial":
        monkeypatch.syspath_prepend(str(TOY))  # its dist-info registers the entry point
        yield Toy(store)
    elif request.param == "dask":
        pytest.importorskip("distributed")
        yield Dask(store, request.getfixturevalue("dask_cluster").address)
    elif request.param == "slurm":
        request.getfixturevalue("slurm_cluster")
        yield Slurm(store)
    else:
        request.getfixturevalue("stack")
        yield AwsBatch(store)


def sweep(tmp_path: Path, engine: Harness, params: str, extra: str = "") -> Path:
    script = tmp_path / "code" / "flaky.py"
    script.parent.mkdir(exist_ok=True)
    script.write_text(FLAKY)
    (tmp_path / "marks").mkdir(exist_ok=True)
    spec = tmp_path / "sweep.yaml"
    spec.write_text(textwrap.dedent(f"""
        name: conformance
        script: {script}
        params: {params}
    """) + engine.block + extra)
    return spec


def test_a_grid_gives_one_correct_row_per_task(tmp_path, engine):
    run = engine.run(sweep(tmp_path, engine, "{grid: {a: [1, 2, 3, 4]}}"))
    df = run.results().sort_values("a")
    assert list(df["a"]) == [1, 2, 3, 4]
    assert list(df["square"]) == [1, 4, 9, 16]
    assert set(df["status"]) == {"succeeded"} and set(df["attempts"]) == {1}


def test_a_failing_task_is_contained_with_its_exit_code_and_its_output_kept(tmp_path, engine):
    run = engine.run(sweep(tmp_path, engine, "{grid: {a: [1, 2, 3]}, fixed: {fail_on: 2}}"))
    df = run.results().set_index("a")
    assert df.loc[2, "status"] == "failed" and df.loc[2, "exit_code"] == 3 and "exit code 3" in df.loc[2, "error"]
    assert list(df.loc[[1, 3], "status"]) == ["succeeded", "succeeded"]
    failed = int(df.loc[2, "task"])
    assert "bad a=2" in run.logs(failed, stderr=True)
    assert "task a=2 says hello" in run.logs(failed)


def test_a_task_over_its_timeout_ends_timeout_and_the_rest_finish(tmp_path, engine):
    run = engine.run(sweep(tmp_path, engine, "{grid: {a: [1, 2]}, fixed: {sleep_on: 2}}", "timeout: 2s\n"))
    df = run.results().set_index("a")
    assert df.loc[2, "status"] == "timeout" and df.loc[2, "duration_s"] < 30
    assert df.loc[1, "status"] == "succeeded"


def test_retries_rerun_a_flaky_task_in_the_same_run(tmp_path, engine):
    marks = tmp_path / "marks"
    run = engine.run(sweep(tmp_path, engine, f"{{grid: {{a: [1, 2]}}, fixed: {{flaky_on: 2, marks: '{marks}'}}}}",
                           "retries: 1\n"))
    df = run.results().set_index("a")
    assert df.loc[2, "status"] == "succeeded" and df.loc[2, "attempts"] == 2
    assert df.loc[1, "attempts"] == 1


def test_resume_reruns_only_what_did_not_succeed(tmp_path, engine):
    marks = tmp_path / "marks"
    spec = sweep(tmp_path, engine, f"{{grid: {{a: [1, 2, 3]}}, fixed: {{flaky_on: 3, marks: '{marks}'}}}}")
    first = engine.run(spec)
    assert dict(first.results().set_index("a")["status"]) == {1: "succeeded", 2: "succeeded", 3: "failed"}
    ended = {i: s.ended_at for i, s in first.store.statuses(first.id).items() if s.state.value == "succeeded"}
    again = engine.resume(first)
    df = again.results(refresh=True).set_index("a")
    assert set(df["status"]) == {"succeeded"} and df.loc[3, "square"] == 9
    after = again.store.statuses(again.id)
    assert all(after[i].ended_at == t for i, t in ended.items()), "a task that had succeeded ran again"


def hang_on_task_1(tmp_path: Path, engine: Harness) -> Path:
    """Four tasks, two at a time; task 1 (a=2) hangs the first time it runs, until released or killed."""
    return sweep(tmp_path, engine, f"{{grid: {{a: [1, 2, 3, 4]}}, fixed: {{hang_on: 2, marks: '{engine.marks}'}}}}",
                 "max_parallel: 2\n")


def succeeded_at(run: Run) -> dict[int, float | None]:
    return {i: s.ended_at for i, s in run.store.statuses(run.id).items() if s.state.value == "succeeded"}


def test_cancel_stops_the_running_task_and_resume_runs_only_what_did_not_succeed(tmp_path, engine):
    run = engine.start(hang_on_task_1(tmp_path, engine))
    wait_for((engine.marks / "2.hung").exists, "task 1 to hang")
    hung = int((engine.marks / "2.pid").read_text())
    engine.cancel(run)
    wait_for(lambda: not alive(hung), "the cancelled task's process to die", timeout=10)
    run = engine.finish(run)
    states = {i: s.value for i, s in run.states().items()}
    assert states[1] == "cancelled" and set(states.values()) <= {"succeeded", "cancelled"}, states
    assert run.results().set_index("task").loc[1, "status"] == "cancelled"
    finished = succeeded_at(run)

    again = engine.resume(run)
    assert set(again.results(refresh=True)["status"]) == {"succeeded"}
    after = succeeded_at(again)
    assert all(after[i] == t for i, t in finished.items()), "a task that had succeeded ran again"


def test_kill_9_of_the_runner_then_resume_runs_only_what_had_not_finished(tmp_path, engine, capsys):
    marks = engine.marks
    spec = hang_on_task_1(tmp_path, engine)
    run = engine.kill_runner(spec, lambda: (marks / "2.hung").exists() and (marks / "1.done").exists()
                             and any(succeeded_at(batchsweep.load_run(store=engine.store)).values()))
    hung = int((marks / "2.pid").read_text())
    states = {i: s.value for i, s in run.states().items()}
    assert "running" not in states.values(), "a task runs on without its runner"
    finished = succeeded_at(run)
    assert finished, "no task had finished before the kill"
    if engine.runner_runs_tasks:  # the task it was running has no status: the run is interrupted, resumable
        assert states[1] == "pending", states
        assert cli.main(["status", run.id, "--store", str(engine.store)]) == 0
        assert "interrupted (resumable)" in capsys.readouterr().out

    again = engine.resume(run)
    assert not alive(hung), "the task the runner was running is still alive after the resume"
    df = again.results(refresh=True)
    assert sorted(df["task"]) == [0, 1, 2, 3] and set(df["status"]) == {"succeeded"}
    after = succeeded_at(again)
    assert all(after[i] == t for i, t in finished.items()), "a task that had finished ran again"


def test_a_task_that_ends_without_a_status_is_lost_and_resume_reruns_it(tmp_path, engine):
    marks = engine.marks
    run = engine.lose_a_task(sweep(tmp_path, engine, f"{{grid: {{a: [1, 2, 3]}}, fixed: {{hang_on: 2, marks: '{marks}'}}}}"), 1)
    (marks / "release").touch()  # task 1 hangs no more
    df = run.results().set_index("task")
    assert df.loc[1, "status"] == "lost", df.loc[1].to_dict()
    assert isinstance(df.loc[1, "error"], str) and df.loc[1, "error"], "a lost task's row says why"
    assert list(df.loc[[0, 2], "status"]) == ["succeeded", "succeeded"]
    finished = succeeded_at(run)

    again = engine.resume(run)
    df = again.results(refresh=True).set_index("task")
    assert set(df["status"]) == {"succeeded"} and df.loc[1, "square"] == 4
    after = succeeded_at(again)
    assert all(after[i] == t for i, t in finished.items()), "a task that had succeeded ran again"


def test_logs_of_a_running_and_a_finished_task_by_the_api_and_the_cli(tmp_path, engine, capsys):
    run = engine.start(sweep(tmp_path, engine, f"{{grid: {{a: [1, 2]}}, fixed: {{hang_on: 2, marks: '{engine.marks}'}}}}"))
    store = str(engine.store)

    def cli_logs(*args: str) -> str:
        capsys.readouterr()
        assert cli.main(["logs", run.id, *args, "--store", store]) == 0
        return capsys.readouterr().out

    wait_for(lambda: "task a=2 hangs" in batchsweep.load_run(run.id, store=engine.store).logs(1),
             "the running task's output")
    assert "task a=2 says hello\ntask a=2 hangs\n" in cli_logs("1")
    (engine.marks / "release").touch()
    run = engine.finish(run)
    assert run.logs(0) == "task a=1 says hello\n" and run.logs(0, stderr=True) == "task a=1 warns\n"
    assert cli_logs("1") == "task a=2 says hello\ntask a=2 hangs\n"
    assert cli_logs("0", "--stderr") == "task a=1 warns\n"
