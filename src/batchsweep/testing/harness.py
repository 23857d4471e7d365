"""How the conformance suite (`batchsweep.testing.conformance`) drives an engine: `Harness`, whose defaults
use the public API the way a user does (`batchsweep.run(..., detach=True)`, `load_run(...).wait()`,
`cancel()`, `resume()`), and the sweep every behaviour runs: FLAKY, a script that fails, hangs, sleeps or
fails once on the task its flags name, leaving marks in a directory so the test knows where each task is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import batchsweep
from batchsweep.runs.run import Run
from batchsweep.store.runlock import pid_alive

if TYPE_CHECKING:
    import pytest

FLAKY = '''
import argparse, json, os, sys, time
p = argparse.ArgumentParser()
p.add_argument("--a", type=int)
p.add_argument("--marks", default="")
p.add_argument("--flaky_on", type=int, default=-1)
p.add_argument("--fail_on", type=int, default=-1)
p.add_argument("--sleep_on", type=int, default=-1)
p.add_argument("--hang_on", type=int, default=-1)
p.add_argument("--quality", type=float, default=-1.0)
p.add_argument("--epochs", type=int, default=0)
p.add_argument("--probe", type=float, default=0.0)
args = p.parse_args()
if args.epochs:  # a known curve, val_loss = quality + 1/epoch; a hopeless one (quality >= 1) is slow
    for epoch in range(1, args.epochs + 1):
        time.sleep(0.05 if args.quality < 1 else 0.5)
        print(f"epoch {epoch} val_loss={args.quality + 1 / epoch:.4f}", flush=True)
    json.dump({"val_loss": args.quality + 1 / args.epochs}, open("metrics.json", "w"))
    sys.exit(0)
if args.probe:  # which GPUs the task was given, and when it held them
    start = time.time()
    time.sleep(args.probe)
    json.dump({"square": args.a * args.a, "cuda": "gpu:" + os.environ.get("CUDA_VISIBLE_DEVICES", ""),
               "held_from": start, "held_to": time.time()}, open("metrics.json", "w"))
    sys.exit(0)
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



def alive(pid: int) -> bool:
    """Whether a process still runs (a zombie has exited)."""
    return pid_alive(pid)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment for a `batchsweep` process of the test's own (the AWS endpoint,
    PYTHONPATH)."""
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
    # Why another process cannot see the run as it is (an emulator that plays the tasks in the test's
    # process); the tests that run `batchsweep` in a second shell then skip, saying so.
    other_shells_blind: str | None = None
    # Why even the test's process cannot see which task runs (an emulator whose scheduler never says); the
    # test that checks every reader names the same running task then skips, saying so.
    running_blind: str | None = None

    def __init__(self, store: Path) -> None:
        self.store = store
        self.marks = store.parent / "marks"  # where the tasks of FLAKY leave their marks (see `sweep`)

    def start(self, spec: Path) -> Run:
        """Start the run and return at once, its tasks running."""
        return batchsweep.run(spec, store=str(self.store), detach=True)

    def finish(self, run: Run) -> Run:
        """Wait for a started run to end, as `batchsweep wait` would."""
        again = batchsweep.load_run(run.id, store=str(self.store))
        again.wait(progress=False)
        return batchsweep.load_run(run.id, store=str(self.store))

    def cancel(self, run: Run) -> None:
        """Cancel a running run, as `batchsweep cancel` would from another process."""
        batchsweep.load_run(run.id, store=str(self.store)).cancel()

    def cli_env(self) -> dict[str, str]:
        """The environment of a `batchsweep` process of the test's own (an engine installed from a path adds
        it)."""
        return cli_env()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`batchsweep ARGS --store STORE` in another process, as a second shell would run it."""
        return subprocess.run([sys.executable, "-m", "batchsweep", *args, "--store", str(self.store)],
                              env=self.cli_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=180)

    def runner_cli(self, spec: Path) -> subprocess.Popen[bytes]:
        """`batchsweep run SPEC` in a process of its own: the runner a kill -9 takes away."""
        return subprocess.Popen(
            [sys.executable, "-m", "batchsweep", "run", str(spec), "--store", str(self.store)],
            env=self.cli_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill_runner(self, spec: Path, ready: Callable[[], bool]) -> Run:
        """Start the run, wait until `ready()`, kill -9 the process that drives it; returns the run."""
        proc = self.runner_cli(spec)
        try:
            wait_for(ready, "the run to get going")
        finally:
            kill_9(proc)
        return batchsweep.load_run(store=str(self.store))

    def give_gpus(self, monkeypatch: pytest.MonkeyPatch, ids: list[str]) -> None:
        """Make `ids` this engine's GPUs for one test (`BATCHSWEEP_GPUS`, which the local leases read). An
        engine whose machines cannot be given GPUs that way overrides it to set them up, or to skip saying
        why."""
        monkeypatch.setenv("BATCHSWEEP_GPUS", ",".join(ids))

    def lose_a_task(self, spec: Path, index: int) -> Run:
        """Run to the end with task `index` (which hangs, if it starts) ending without a status, the way this
        engine can lose one. An engine that cannot lose a task this way skips (`pytest.skip` with why)."""
        import pytest

        pytest.skip(
            f"{self.name or type(self).__name__}: no way to lose a task is given (Harness.lose_a_task)"
        )

    def run(self, spec: Path) -> Run:
        run = batchsweep.run(spec, store=str(self.store), progress=False)
        return batchsweep.load_run(run.id, store=str(self.store))

    def resume(self, run: Run) -> Run:
        run = batchsweep.load_run(run.id, store=str(self.store))
        run.resume()
        run.wait(progress=False)
        return batchsweep.load_run(run.id, store=str(self.store))


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


def hang_on_task_1(tmp_path: Path, engine: Harness) -> Path:
    """Four tasks, two at a time; task 1 (a=2) hangs the first time it runs, until released or killed."""
    return sweep(
        tmp_path,
        engine,
        f"{{grid: {{a: [1, 2, 3, 4]}}, fixed: {{hang_on: 2, marks: '{engine.marks}'}}}}",
        "max_parallel: 2\n",
    )


def succeeded_at(run: Run) -> dict[int, float | None]:
    return {i: s.ended_at for i, s in run.store.statuses(run.id).items() if s.state.value == "succeeded"}
