"""One runner per run (issue 15, item 1): an exclusive lock in the store, on a local disk and on S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import FakeClock, write_spec

import batchsweep
from batchsweep.planning import plan as planning
from batchsweep.runs import start as runs
from batchsweep.runs.run import Run
from batchsweep.store import runlock
from batchsweep.store.core import Store

SCRIPTS = Path(__file__).parent / "scripts"


def _cli(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "batchsweep", *args, "--store", str(tmp_path / "store")],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CI": "1"})


def _failing_once_run(tmp_path: Path, n: int = 6) -> tuple[str, Path]:
    marks = tmp_path / "marks"
    marks.mkdir()
    log = tmp_path / "executions.log"
    spec = write_spec(tmp_path, f"""
        name: twice
        script: {SCRIPTS / 'hostile_task.py'}
        params: {{grid: {{a: {list(range(n))}}}, fixed: {{log: "{log}", fail_first: "{marks}", sleep: 0.4}}}}
        max_parallel: 2
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    assert set(run.results()["status"]) == {"failed"}
    return run.id, log


def test_two_resumes_started_together_one_is_refused_and_no_task_runs_twice(tmp_path):
    run_id, log = _failing_once_run(tmp_path)
    first, second = _cli(tmp_path, "resume", run_id), _cli(tmp_path, "resume", run_id)
    outcomes = sorted([(p.wait(timeout=120), p.stderr.read()) for p in (first, second)])
    assert outcomes[0][0] == 0, outcomes
    assert outcomes[1][0] == 2 and "is being driven by" in outcomes[1][1], outcomes
    assert len(outcomes[1][1].strip().splitlines()) == 1
    # once failing, once resumed
    assert sorted(map(int, log.read_text().split())) == sorted(list(range(6)) * 2)
    df = batchsweep.load_run(run_id, store=tmp_path / "store").results(refresh=True)
    assert len(df) == 6 and set(df["status"]) == {"succeeded"}


def test_two_resumes_racing_in_one_instant_run_each_task_once(tmp_path):
    import threading

    run_id, log = _failing_once_run(tmp_path)
    runs_ = [batchsweep.load_run(run_id, store=tmp_path / "store") for _ in range(2)]
    barrier = threading.Barrier(2)
    outcome: dict[int, object] = {}

    def resume(i: int) -> None:
        barrier.wait()
        try:
            outcome[i] = runs_[i].resume()
            runs_[i].wait(progress=False)
        except runlock.RunBusy as e:
            outcome[i] = e

    threads = [threading.Thread(target=resume, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(type(v).__name__ for v in outcome.values()) == ["RunBusy", "list"]
    assert sorted(map(int, log.read_text().split())) == sorted(list(range(6)) * 2)


def test_a_detached_runner_holds_the_run_until_it_ends(tmp_path):
    run_id, log = _failing_once_run(tmp_path, n=4)
    run = batchsweep.load_run(run_id, store=tmp_path / "store")
    run.resume(detach=True)
    with pytest.raises(runlock.RunBusy, match="is being driven by"):
        batchsweep.load_run(run_id, store=tmp_path / "store").resume()
    assert batchsweep.load_run(run_id, store=tmp_path / "store").wait(progress=False) == 0
    assert runlock.holder(Store.open(tmp_path / "store"), run_id) is None
    assert len(log.read_text().split()) == 8


def _plant(store: Store, run_id: str, **fields: object) -> None:
    record = {"token": "t0", "host": "elsewhere", "pid": 1, "pid_started": "1", "command": "batchsweep run",
              "heartbeat_at": time.time(), **fields}
    store.backend.write_bytes(store.run_key(run_id, "runner.json"), json.dumps(record).encode())


def test_a_runner_on_another_host_blocks_while_its_heartbeat_is_fresh_then_is_taken_over(tmp_path):
    run_id, _ = _failing_once_run(tmp_path, n=2)
    store = Store.open(tmp_path / "store")
    _plant(store, run_id)
    run = batchsweep.load_run(run_id, store=store)
    with pytest.raises(runlock.RunBusy, match="on elsewhere"):
        run.resume()
    assert run.engine.poll().active is False  # the local engine record is finished: status/wait do not hang
    _plant(store, run_id, heartbeat_at=time.time() - runlock.STALE_S - 1)
    assert run.resume() and run.wait(progress=False) == 0


def test_a_crashed_runner_on_this_host_is_taken_over_at_once(tmp_path):
    import socket

    run_id, _ = _failing_once_run(tmp_path, n=2)
    store = Store.open(tmp_path / "store")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _plant(store, run_id, host=socket.gethostname(), pid=dead.pid, pid_started="0")
    run = batchsweep.load_run(run_id, store=store)
    assert run.resume() and run.wait(progress=False) == 0


def test_a_colliding_run_id_never_overwrites_an_earlier_run(tmp_path, monkeypatch):
    spec = write_spec(tmp_path, f"""
        name: same
        script: {SCRIPTS / 'hostile_task.py'}
        params: {{grid: {{a: [1]}}}}
    """)
    ids = iter(["same-fixed", "same-fixed", "same-next"])
    # plan() names the run; start() names it again only when the name is taken
    monkeypatch.setattr(planning, "new_run_id", lambda name: next(ids))
    monkeypatch.setattr(runs, "new_run_id", lambda name: next(ids))
    first = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    second = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    assert first.id == "same-fixed" and second.id == "same-next"
    assert Store.open(tmp_path / "store").run_info("same-fixed")["created"] == first.info["created"]


def test_cancel_reaches_a_runner_through_the_store(tmp_path):
    """A cancel request in the store stops the driver even where no signal can reach it (another host)."""
    spec = write_spec(tmp_path, f"""
        name: farcancel
        script: {SCRIPTS / 'hostile_task.py'}
        params: {{grid: {{a: [1, 2, 3, 4, 5, 6]}}, fixed: {{sleep: 300}}}}
        max_parallel: 2
    """)
    env = {**os.environ, "BATCHSWEEP_HEARTBEAT_S": "0.2", "CI": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchsweep", "run", str(spec), "--store", str(tmp_path / "store")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    run_id = proc.stdout.readline().strip()
    store = Store.open(tmp_path / "store")
    deadline = time.monotonic() + 120
    while runlock.holder(store, run_id) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runlock.request_cancel(store, run_id) is not None
    assert proc.wait(timeout=120) == 1  # far below the tasks' 300 s: only the cancel ends the run this soon
    df = batchsweep.load_run(run_id, store=store).results()
    assert set(df["status"]) == {"cancelled"}
    assert runlock.holder(store, run_id) is None


def test_a_cancel_that_reaches_the_driver_before_its_tasks_are_submitted_still_stops_them(
    tmp_path, monkeypatch
):
    """`batchsweep cancel` while `run` is still setting up (the hold is taken, nothing submitted yet): the
    engine has nothing to stop then, so the driver stops what it submits next."""
    monkeypatch.setattr(runlock, "HEARTBEAT_S", 0.1)
    spec = write_spec(tmp_path, f"""
        name: earlycancel
        script: {SCRIPTS / 'hostile_task.py'}
        params: {{grid: {{a: [1, 2]}}, fixed: {{sleep: 300}}}}
    """)
    hold_with = Run._hold_with

    def hold_then_cancel(self: Run, lock: runlock.RunLock) -> None:
        hold_with(self, lock)
        runlock.request_cancel(self.store, self.id)
        assert self._cancel_wanted.wait(30), "the heartbeat never saw the request"

    monkeypatch.setattr(Run, "_hold_with", hold_then_cancel)
    started = time.monotonic()
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    assert time.monotonic() - started < 100  # far below the tasks' 300 s
    assert set(run.results()["status"]) == {"cancelled"}


def test_s3_store_creates_exclusively_and_swaps_conditionally(aws_env, session):
    from batchsweep.aws.clients import make_client

    make_client("s3", session=session).create_bucket(Bucket="locks")
    store = Store.open("s3://locks/batchsweep")
    first = runlock.RunLock.create(store, "r-1", command="a")
    assert first is not None
    assert runlock.RunLock.create(store, "r-1", command="b") is None  # the id is taken
    with pytest.raises(runlock.RunBusy, match="`a`"):
        runlock.RunLock.acquire(store, "r-1", command="b")
    assert first.update()  # heartbeat
    data, tag = store.backend.read_tagged(store.run_key("r-1", "runner.json"))
    assert not store.backend.replace_if(store.run_key("r-1", "runner.json"), data, '"stale-etag"')
    first.release()
    second = runlock.RunLock.acquire(store, "r-1", command="b")
    assert not first.update() and first.lost  # the old holder learns it lost the run
    second.release()


def test_cancel_says_so_when_a_runner_elsewhere_does_not_stop(tmp_path):
    """A runner on another host that never answers: the cancel waits its next heartbeat and CANCEL_WAIT_S more
    on the engine's clock (a fake one: no real waiting), polling with back-off, then says the stop is
    unconfirmed."""
    from batchsweep.engines.local import engine as local

    run_id, _ = _failing_once_run(tmp_path, n=1)
    store = Store.open(tmp_path / "store")
    _plant(store, run_id)  # a live runner on another host that never answers
    store.write_json(store.run_key(run_id, "engine.json"), {"engine": "local", "pid": 1, "host": "elsewhere"})
    run = batchsweep.load_run(run_id, store=store)
    clock = run.engine.clock = FakeClock(wall=time.time())
    unconfirmed = run.cancel()
    assert unconfirmed is not None and "has not stopped yet" in unconfirmed and "on elsewhere" in unconfirmed
    assert (
        local.CANCEL_WAIT_S + runlock.HEARTBEAT_S
        <= sum(clock.slept)
        < local.CANCEL_WAIT_S + runlock.HEARTBEAT_S + 1
    )
    assert len(clock.slept) < 60 and max(clock.slept) == 1.0  # back-off: ~45 polls, not 700
    request = json.loads((tmp_path / "store" / "runs" / run_id / "cancel.json").read_text())
    assert request["token"] == "t0"  # the runner will see it with its next heartbeat


def test_the_heartbeat_beats_every_heartbeat_s_and_answers_a_cancel_request_at_its_next_beat(tmp_path):
    """The holder's heartbeat thread on a fake clock: each HEARTBEAT_S of it rewrites the record's stamp, a
    cancel request is answered at the next beat (not before), and a released hold stops beating."""
    import threading

    store = Store.open(tmp_path / "store")
    clock = FakeClock(wall=time.time())
    lock = runlock.RunLock.create(store, "r-1", command="batchsweep run", clock=clock)
    assert lock is not None

    def stamp() -> float:
        return json.loads(store.backend.read_bytes(store.runner_key("r-1")))["heartbeat_at"]

    cancelled = threading.Event()
    lock.start_heartbeat(on_cancel=cancelled.set)
    started = clock.time()
    clock.sleep(runlock.HEARTBEAT_S - 0.5)
    assert stamp() == started  # no beat yet
    clock.sleep(0.5)
    assert stamp() == started + runlock.HEARTBEAT_S
    for _ in range(3):
        clock.sleep(runlock.HEARTBEAT_S)
    assert stamp() == started + 4 * runlock.HEARTBEAT_S
    assert runlock.request_cancel(store, "r-1") is not None
    clock.sleep(runlock.HEARTBEAT_S / 2)
    assert not cancelled.is_set()
    clock.sleep(runlock.HEARTBEAT_S / 2)
    assert cancelled.wait(10)  # the hook runs in a thread of its own, started by the beat
    lock.release()
    released = stamp()
    clock.sleep(10 * runlock.HEARTBEAT_S)
    assert stamp() == released and runlock.holder(store, "r-1", clock) is None


def test_run_state_problems_have_their_own_error_type_and_exit_2():
    """A run that cannot take a command now (still running, driven elsewhere) is a RunStateError, not a spec
    problem; like every SweepError it is one line and exit 2."""
    from batchsweep.errors import RunStateError, SpecError, SweepError

    assert issubclass(runlock.RunBusy, RunStateError) and not issubclass(RunStateError, SpecError)
    assert issubclass(RunStateError, SweepError) and RunStateError.exit_code == 2


def test_a_claim_whose_temp_file_the_driver_swept_is_made_again(tmp_path, monkeypatch):
    """The run's driver removes temp files it takes for a killed writer's (`remove_stale_temp`) while a second
    `resume` is claiming the run: before, that resume ended in FileNotFoundError on its temp, exit 1, instead
    of being told who drives the run."""
    import os

    from batchsweep.store import local as localstore

    backend = localstore.LocalBackend(tmp_path)
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    real_link, swept = os.link, []

    def sweep_then_link(src, dst, *args, **kwargs):
        if not swept:
            swept.append(src)
            os.unlink(src)
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(localstore.os, "link", sweep_then_link)
    assert backend.create_exclusive("runs/r1/runner.json", b"{}") and swept
    assert (tmp_path / "runs" / "r1" / "runner.json").read_bytes() == b"{}"
    assert not backend.create_exclusive("runs/r1/runner.json", b"{}")
    assert [p.name for p in (tmp_path / "runs" / "r1").iterdir()] == ["runner.json"]
