"""The conformance suite (`batchsweep.testing.conformance`) on every engine of the package: local, Dask (a
real scheduler), AWS Batch (moto, containers played here), Slurm (a real one-node cluster) and the toy engine
registered from outside the package. Each is one `Harness`: how the suite drives it into its harder
moments."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dask_fixtures import *  # noqa: F401,F403 - the dask_cluster fixture

import batchsweep
from batchsweep.errors import SweepError
from batchsweep.planning import plan as planning
from batchsweep.runs import start as runs
from batchsweep.runs.run import Run
from batchsweep.testing import Conformance, Harness
from batchsweep.testing.harness import alive, cli_env, kill_9, wait_for

TOY = Path(__file__).parent / "toy"


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
        pytest.skip(
            "the local runner waits on every task's process and writes its status however it ends (a "
            "SIGKILLed task is failed); a task has no status only when its runner died: the kill -9 case"
        )


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

    def cli_env(self) -> dict[str, str]:
        return cli_env(toy=str(TOY))  # its dist-info registers the entry point

    def lose_a_task(self, spec: Path, index: int) -> Run:
        pytest.skip(
            "the serial engine runs each task in a process it waits on and writes its status however it "
            "ends; a task has no status only when its driver died: the kill -9 case"
        )


class Dask(Harness):
    name = "dask"

    def __init__(self, store: Path, address: str) -> None:
        super().__init__(store)
        self.block = f'backend: dask\ndask: {{scheduler: "{address}"}}\n'

    def give_gpus(self, monkeypatch: pytest.MonkeyPatch, ids: list[str]) -> None:
        pytest.skip(
            "the test cluster's workers declare no GPU resources (tests/test_dask_engine.py leases them)"
        )

    def lose_a_task(self, spec: Path, index: int) -> Run:
        # The worker's own code fails before the task's script runs (the task's input, there when the run was
        # planned, is gone when the worker stages it): Dask sees the future fail and no status is written.
        inputs = spec.parent / "inputs"
        inputs.mkdir()
        values = [task.params["a"] for task in planning.plan(spec).tasks]
        for a in values:
            (inputs / f"{a}.txt").write_text(str(a))
        spec.write_text(spec.read_text() + f"inputs: ['{inputs}/{{a}}.txt']\n")
        plan = planning.plan(spec)
        (inputs / f"{values[index]}.txt").unlink()
        run = runs.start(plan, store=self.store)
        run.wait(progress=False)
        (inputs / f"{values[index]}.txt").write_text(str(values[index]))  # resume finds it again
        return batchsweep.load_run(run.id, store=self.store)


class AwsBatch(Harness):
    """Batch runs the containers whatever happens to the submitter: the player stands in for it (every child
    of the latest submission, played here; a TerminateJob stops them as ECS would)."""

    name = "aws-batch"
    runner_runs_tasks = False
    other_shells_blind = (
        "the emulator's containers are played in the test's process: another process sees moto's "
        "own job states (every child SUCCEEDED at once), not the played ones"
    )
    block = (
        "backend: aws-batch\naws: {stack: batchsweep, region: us-east-1}\nresources: {vcpus: 0.5, "
        "memory_mib: 1024}\n"
    )

    running_blind = (
        "the emulator's played containers do not change moto's job states, so Batch never says which "
        "child runs (tests/engines/test_aws_status.py names them from children a wrapped Batch client "
        "reports running, and reads running tasks' series from S3)"
    )

    def __init__(self, store: Path, stack: dict[str, str], session: Any) -> None:
        super().__init__(store)
        self.playing: threading.Thread | None = None
        self.stack, self.session = stack, session

    def push_image_for(self, spec: Path) -> None:
        """What `batchsweep image push SPEC` would leave: an image with the spec's requirements (`stop:` puts
        Optuna in it), registered as the stack's."""
        from batchsweep.emulator import server as emulator
        from batchsweep.infra import image
        from batchsweep.spec.reader import load

        requirements, _ = image.spec_requirements(load(spec))
        if requirements:
            tag = image.image_tag(image.current_dockerfile(requirements), requirements)
            emulator.register_image(self.session, f"{image.repository_uri(self.stack)}:{tag}")

    def play_in_background(self, run: Run) -> None:
        from batchsweep.emulator import player

        self.playing = threading.Thread(
            target=player.play, args=(batchsweep.load_run(run.id, store=self.store),), daemon=True
        )
        self.playing.start()

    def start(self, spec: Path) -> Run:
        self.push_image_for(spec)
        run = batchsweep.run(spec, store=self.store, detach=True)
        self.play_in_background(run)
        return run

    def finish(self, run: Run) -> Run:
        assert self.playing is not None
        self.playing.join(timeout=120)
        assert not self.playing.is_alive(), "the played containers did not end"
        return batchsweep.load_run(run.id, store=self.store)

    def kill_runner(self, spec: Path, ready: Callable[[], bool]) -> Run:
        # No runner runs the tasks: the submitter (`batchsweep run`, attached, polling Batch) dies once its
        # jobs are submitted, and Batch runs them all the same.
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
        # the jobs of the first submission end first (`resume` needs an ended run)
        if self.playing is not None:
            self.finish(run)
        from batchsweep.emulator import player

        run = batchsweep.load_run(run.id, store=self.store)
        run.resume(detach=True)
        player.play(batchsweep.load_run(run.id, store=self.store))  # the resume's submission, every child
        return batchsweep.load_run(run.id, store=self.store)

    def give_gpus(self, monkeypatch: pytest.MonkeyPatch, ids: list[str]) -> None:
        pytest.skip("Batch places GPU jobs on EC2 GPU instances; the emulator's played containers have none")

    def lose_a_task(self, spec: Path, index: int) -> Run:
        from batchsweep.emulator import player

        # The container of the child that runs task `index` dies while the task hangs (SIGKILL, no SIGTERM: a
        # lost host), so its worker never writes the status; Batch reports the child ended. Played on fresh
        # interpreters (`fork=False`), as the image test does: one conformance path never goes through the
        # player's zygote (batchsweep.emulator.zygote), which every other played child here does.
        run = batchsweep.run(spec, store=self.store, detach=True)
        played = player.play(
            run, kill_when=lambda line: f"[task {index}]" in line and "hangs" in line, fork=False
        )
        assert not any(p.forked for p in played)
        return batchsweep.load_run(run.id, store=self.store)

    def run(self, spec: Path) -> Run:
        from batchsweep.emulator import player

        self.push_image_for(spec)
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

    def give_gpus(self, monkeypatch: pytest.MonkeyPatch, ids: list[str]) -> None:
        pytest.skip("the test cluster's node has no GPU GRES configured")

    def lose_a_task(self, spec: Path, index: int) -> Run:
        # kill -9 of the array task's job step (its worker and the task it runs): no status is ever written.
        run = batchsweep.run(spec, store=self.store, detach=True)
        wait_for((self.marks / f"{index + 1}.hung").exists, "the task to hang", timeout=60)
        task = int((self.marks / f"{index + 1}.pid").read_text())
        worker = task
        for _ in range(2):  # the task's parent is its reaper (task/_reap.py), whose parent is the worker
            worker = int(
                next(
                    line.split()[1]
                    for line in Path(f"/proc/{worker}/status").read_text().splitlines()
                    if line.startswith("PPid:")
                )
            )
        assert "batchsweep.worker" in Path(f"/proc/{worker}/cmdline").read_text()
        for pid in (worker, task):
            os.kill(pid, signal.SIGKILL)
        return self.finish(run)

    def resume(self, run: Run) -> Run:
        run = self.finish(run)  # `resume` needs the first submission's array tasks gone
        run.resume(detach=True)
        return self.finish(run)


@pytest.fixture(params=["local", "serial", "dask", "aws-batch", "slurm"])
def engine(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
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
        yield AwsBatch(store, request.getfixturevalue("stack"), request.getfixturevalue("session"))


class TestEveryEngine(Conformance):
    """Every behaviour of the suite, on each engine the `engine` fixture above yields."""
