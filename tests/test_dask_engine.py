"""The Dask engine end to end, on a real `dask scheduler` with two `dask worker` processes (see
dask_fixtures)."""

from __future__ import annotations

import json
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest
from dask_fixtures import *  # noqa: F401,F403 - the dask_cluster fixture
from dask_fixtures import START_TIMEOUT_S
from helpers import alive, assert_stopped_by_the_median_rule, write_spec

import batchsweep
from batchsweep import cli
from batchsweep.engines.dask.engine import DaskEngine
from batchsweep.errors import SpecError
from batchsweep.planning import plan as planning
from batchsweep.runs import start as runs
from batchsweep.spec.reader import validate
from batchsweep.store.core import Store

pytest.importorskip("distributed")

SCRIPT = Path(__file__).parent / "scripts" / "writes_metrics.py"
COMPARED = ["task", "a", "b", "status", "attempts", "exit_code", "error", "product", "a_seen"]


def dask_spec(tmp_path: Path, address: str, params: str, extra: str = "") -> Path:
    body = textwrap.dedent(f"""
        name: dasky
        script: {SCRIPT}
        params: {params}
        backend: dask
        dask: {{scheduler: "{address}"}}
    """)
    return write_spec(tmp_path, body + extra)


def wait_for(predicate, timeout: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def status_files(store: Path) -> list[Path]:
    return sorted(store.glob("runs/*/tasks/*/status.json"))


# -- on the two-worker cluster ------------------------------------------------------------------
def test_twenty_tasks_on_an_existing_scheduler_give_the_local_engines_results(
    tmp_path, dask_cluster, monkeypatch
):
    monkeypatch.setenv("CI", "true")
    spec = write_spec(tmp_path, f"""
        name: grid
        script: {SCRIPT}
        params:
          grid: {{a: [1, 2, 3, 4], b: [0.5, 1, 2, 3, 4]}}
    """)
    local = batchsweep.run(spec, store=tmp_path / "local", progress=False, max_parallel=2).results()
    code = cli.main(["run", str(spec), "--backend", "dask", "--set", f"dask.scheduler={dask_cluster.address}",
                     "--store", str(tmp_path / "dask")])
    assert code == 0
    run = batchsweep.load_run(store=tmp_path / "dask")
    assert run.info["engine"] == {"scheduler": dask_cluster.address}
    df = run.results()
    assert len(df) == 20
    assert df[COMPARED].equals(local[COMPARED])
    assert df["worker"].str.startswith("tcp://127.0.0.1:").all() and df["worker"].nunique() == 2
    # Each worker's batch is one summary (a pack): together they cover every task once, with its metrics.
    packs = {p: [json.loads(line)["i"] for line in p.read_text().splitlines()]
             for p in (tmp_path / "dask" / "runs" / run.id / "packs").glob("*.jsonl")}
    assert 2 <= len(packs) < 20 and sorted(i for covered in packs.values() for i in covered) == list(
        range(20)
    )
    # A batch its worker never wrote (killed first): its tasks come from their own files, the rest from the
    # other summaries alone.
    lost, covered = next(iter(packs.items()))
    lost.unlink()
    for i in set(range(20)) - set(covered):
        for name in ("status.json", "metrics.json"):
            (tmp_path / "dask" / "runs" / run.id / "tasks" / str(i) / name).unlink()
    again = batchsweep.load_run(run.id, store=tmp_path / "dask").results(refresh=True)
    assert again[COMPARED].equals(local[COMPARED])


def test_a_failing_and_a_timing_out_task_are_contained(tmp_path, dask_cluster):
    pids = tmp_path / "pids"
    pids.mkdir()
    spec = dask_spec(tmp_path, dask_cluster.address,
                     f'{{grid: {{a: [1, 2, 3, 4]}}, fixed: {{fail_on: 2, hang_on: 4, pid_dir: "{pids}"}}}}',
                     "timeout: 2s\n")
    t0 = time.monotonic()
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    assert time.monotonic() - t0 < 2 + 8, "the run must end within seconds of the timeout"
    df = run.results().set_index("a")
    assert (
        df.loc[2, "status"] == "failed"
        and df.loc[2, "exit_code"] == 3
        and df.loc[2, "error"] == "exit code 3: failing on purpose"
    )
    assert df.loc[4, "status"] == "timeout" and df.loc[4, "error"] == "timeout after 2s"
    assert set(df.loc[[1, 3], "status"]) == {"succeeded"}
    assert run.exit_code == 1
    for name in ("4.pid", "4.child.pid"):
        assert not alive(int((pids / name).read_text())), f"{name} survived the timeout"
    assert "failing on purpose" in run.logs(1, stderr=True)




def test_a_detached_run_is_followed_by_wait_from_another_process(tmp_path, dask_cluster, capsys):
    spec = dask_spec(tmp_path, dask_cluster.address, "{grid: {a: [1, 2, 3, 4, 5, 6]}, fixed: {sleep: 0.3}}")
    store = tmp_path / "store"
    assert cli.main(["run", str(spec), "--detach", "--store", str(store)]) == 0
    run_id = capsys.readouterr().out.splitlines()[0]
    # reconnects to the scheduler in engine.json
    assert cli.main(["wait", run_id, "--store", str(store)]) == 0
    df = batchsweep.load_run(run_id, store=store).results()
    assert list(df["product"]) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_another_process_asks_the_scheduler_at_most_once_per_second_of_the_engines_clock(
    tmp_path, dask_cluster
):
    """`status`/`wait` of a detached run reuse the scheduler's last answer for REMOTE_POLL_EVERY_S of the
    engine's clock: on a fake clock that stands still the answer stays, however long the tasks really take;
    moved on, the next poll asks again and sees the run end."""
    from helpers import FakeClock

    from batchsweep.engines.dask.engine import REMOTE_POLL_EVERY_S

    spec = dask_spec(tmp_path, dask_cluster.address, "{grid: {a: [1, 2]}, fixed: {sleep: 0.5}}")
    store = tmp_path / "store"
    run_id = batchsweep.run(spec, store=store, detach=True).id
    engine = batchsweep.load_run(run_id, store=store).engine
    clock = engine.clock = FakeClock()
    first = engine.poll()
    assert first.active
    wait_for(lambda: len(status_files(store)) == 2, what="both tasks to end")
    assert engine.poll() is first  # not asked again: no time passed on the engine's clock
    wait_for(lambda: (clock.sleep(REMOTE_POLL_EVERY_S), not engine.poll().active)[1], what="the run to end")


def test_a_finished_detached_run_says_nothing_of_a_scheduler_that_is_gone(tmp_path, dask_cluster, capsys):
    import json

    spec = dask_spec(tmp_path, dask_cluster.address, "{grid: {a: [1, 2]}}")
    store = tmp_path / "store"
    assert cli.main(["run", str(spec), "--detach", "--store", str(store)]) == 0
    run_id = capsys.readouterr().out.splitlines()[0]
    assert cli.main(["wait", run_id, "--store", str(store)]) == 0
    engine = store / "runs" / run_id / "engine.json"
    record = json.loads(engine.read_text())
    engine.write_text(json.dumps({**record, "scheduler": "tcp://127.0.0.1:9"}))  # the scheduler went away
    capsys.readouterr()
    assert cli.main(["status", run_id, "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "2 succeeded" in out and "unreachable" not in out


def test_ctrl_c_on_an_attached_run_kills_the_task_and_its_children(tmp_path, dask_cluster):
    pids = tmp_path / "pids"
    pids.mkdir()
    spec = dask_spec(
        tmp_path,
        dask_cluster.address,
        f'{{grid: {{a: [1, 2, 3, 4, 5, 6, 7, 8]}}, fixed: {{hang_on: 1, sleep: 0.5, pid_dir: "{pids}"}}}}',
    )
    run = runs.start(planning.plan(spec), store=tmp_path / "store")
    wait_for(lambda: (pids / "1.child.pid").exists(), what="the hanging task's child")
    run.cancel()  # what the CLI does on Ctrl-C
    assert not alive(int((pids / "1.pid").read_text())) and not alive(int((pids / "1.child.pid").read_text()))
    states = run.states()
    assert states[0].value == "cancelled" and run.statuses()[0].error == "cancelled"
    assert set(s.value for s in states.values()) <= {"succeeded", "cancelled"}


def test_a_task_that_fails_outside_its_script_is_lost_with_the_reason(tmp_path, dask_cluster):
    # The worker's own code fails before the script runs: task 0's input, there when the run was planned, is
    # gone when the worker stages it.
    (tmp_path / "in").mkdir()
    for a in (1, 2):
        (tmp_path / "in" / f"{a}.txt").write_text(str(a))
    spec = dask_spec(tmp_path, dask_cluster.address, "{grid: {a: [1, 2]}}", "inputs: ['in/{a}.txt']\n")
    plan = planning.plan(spec)
    (tmp_path / "in" / "1.txt").unlink()
    run = runs.start(plan, store=tmp_path / "store")
    assert run.wait(progress=False) == 1
    df = batchsweep.load_run(run.id, store=tmp_path / "store").results().set_index("task")
    assert df.loc[0, "status"] == "lost" and df.loc[0, "error"].startswith("FileNotFoundError"), df.loc[
        0, "error"
    ]
    assert df.loc[1, "status"] == "succeeded"


def test_a_worker_killed_mid_run_loses_no_task(tmp_path, dask_cluster):
    spec = dask_spec(tmp_path, dask_cluster.address,
                     "{grid: {a: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]}, "
                     "fixed: {sleep: 0.5}}")
    store = tmp_path / "store"
    run = runs.start(planning.plan(spec), store=store)  # attached: returns once submitted
    wait_for(lambda: len(status_files(store)) >= 2, what="the first statuses")
    dask_cluster.kill_worker(dask_cluster.workers[0])
    assert run.wait(progress=False) == 0
    assert len(status_files(store)) == 20
    df = run.results()
    assert sorted(df["task"]) == list(range(20)) and set(df["status"]) == {"succeeded"}
    assert df["worker"].nunique() >= 1
    # The killed worker's batch was never written: its tasks are read from their own files, the rest from
    # the summaries of the worker that lived.
    again = batchsweep.load_run(run.id, store=store).results(refresh=True)
    assert again[["task", "status", "a"]].equals(df[["task", "status", "a"]])
    assert list((store / "runs" / run.id / "packs").glob("*.jsonl"))
    _, progress = batchsweep.load_run(run.id, store=store).snapshot()  # what `batchsweep status` shows
    assert progress.notes == ("1 Dask worker lost mid-run; Dask ran their tasks again elsewhere",)


def _count_store_opens() -> bool:
    import batchsweep.store.core as core

    real = core.Store.__dict__["open"]
    opened: list[str] = []

    def counted(cls, location=None, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(location))
        return real.__func__(cls, location, **kwargs)

    core.Store.open = classmethod(counted)  # type: ignore[method-assign, assignment]
    core._OPENED, core._REAL_OPEN = opened, real  # type: ignore[attr-defined]
    return True


def _store_opens(url: str) -> int:
    import batchsweep.store.core as core

    core.Store.open = core._REAL_OPEN  # type: ignore[attr-defined, method-assign]
    return sum(location == url for location in core._OPENED)  # type: ignore[attr-defined]


def test_a_worker_process_opens_the_store_once_not_once_per_task(tmp_path, dask_cluster):
    """Its statuses are then fsynced by one background thread in batches, and its S3 client made once."""
    import cloudpickle
    from distributed import Client

    spec = dask_spec(tmp_path, dask_cluster.address, "{grid: {a: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "
                                                     "b: [1, 2]}}")
    store = tmp_path / "store"
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests
    try:
        with Client(dask_cluster.address, timeout=START_TIMEOUT_S, set_as_default=False) as client:
            client.run(_count_store_opens)
            try:
                run = batchsweep.run(spec, store=store, progress=False)
            finally:
                opens = client.run(_store_opens, str(store.absolute()))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert run.exit_code == 0 and len(status_files(store)) == 20
    assert sum(opens.values()) >= 1 and all(n <= 1 for n in opens.values()), opens


# -- without the shared cluster -----------------------------------------------------------------
def test_cluster_local_is_started_and_stopped_by_batchsweep(tmp_path):
    spec = write_spec(tmp_path, f"""
        name: localcluster
        script: {SCRIPT}
        params: {{grid: {{a: [1, 2, 3, 4]}}}}
        backend: dask
        dask: {{cluster: local}}
        max_parallel: 2
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    df = run.results()
    assert set(df["status"]) == {"succeeded"} and list(df["product"]) == [1.0, 2.0, 3.0, 4.0]
    assert run.info["engine"] == {"cluster": "local", "n_workers": 2}
    record = json.loads((tmp_path / "store" / "runs" / run.id / "engine.json").read_text())
    assert record["owns_cluster"] and record["finished"]
    host, port = record["scheduler"].removeprefix("tcp://").rsplit(":", 1)
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=1).close()


@pytest.mark.parametrize(("setting", "message"), [
    ("dask.cluster={class: no_such_pkg.FancyCluster}",
     "error: dask.cluster.class: cannot import 'no_such_pkg.FancyCluster' (No module named 'no_such_pkg'); "
     "pip install no-such-pkg or fix the name (e.g. dask_jobqueue.SLURMCluster)"),
    ("dask.schedular=tcp://127.0.0.1:8786",
     "error: dask.schedular: unknown key; did you mean 'scheduler'? valid keys: scheduler, cluster"),
])
def test_a_bad_dask_block_exits_2_with_one_line(tmp_path, capsys, setting, message):
    spec = write_spec(tmp_path, f"""
        name: bad
        script: {SCRIPT}
        params: {{grid: {{a: [1]}}}}
    """)
    code = cli.main(
        ["run", str(spec), "--backend", "dask", "--set", setting, "--store", str(tmp_path / "store")]
    )
    assert code == 2
    err = capsys.readouterr().err  # a bad block is a bad spec: the line may name the spec file first
    assert (
        err.startswith("error: ")
        and err.endswith(message.removeprefix("error: ") + "\n")
        and err.count("\n") == 1
    )
    assert not (tmp_path / "store" / "runs").exists() or not list((tmp_path / "store" / "runs").iterdir())


def test_detach_with_a_cluster_batchsweep_owns_exits_2_and_leaves_no_run(tmp_path, capsys):
    spec = write_spec(tmp_path, f"""
        name: detached
        script: {SCRIPT}
        params: {{grid: {{a: [1]}}}}
        backend: dask
    """)
    assert cli.main(["run", str(spec), "--detach", "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dask.scheduler" in err
    assert Store.open(tmp_path / "store").run_ids() == []


def test_without_distributed_the_error_names_the_extra(tmp_path, monkeypatch):
    spec = validate({"name": "x", "script": str(SCRIPT), "params": {"grid": {"a": [1]}}, "backend": "dask"},
                    source="test", base_dir=tmp_path)
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(SpecError, match=r"pip install 'batchsweep\[dask\]'"):
        DaskEngine.check(spec, [])


def test_resources_become_dask_worker_resources_and_land_only_where_declared(tmp_path, dask_cluster):
    gpu_worker = dask_cluster.add_worker("--resources", "GPU=1")
    try:
        wait_for(lambda: dask_cluster.connected() == 3, what="the GPU worker")
        spec = dask_spec(
            tmp_path, dask_cluster.address, "{grid: {a: [1, 2, 3, 4]}}", "resources: {gpus: 1}\n"
        )
        run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
        df = run.results()
        assert set(df["status"]) == {"succeeded"}
        assert run.info["engine"]["resources"] == {"GPU": 1}
        from distributed import Client

        with Client(dask_cluster.address, timeout=START_TIMEOUT_S, set_as_default=False) as client:
            declared = {
                a for a, w in client.scheduler_info()["workers"].items() if w.get("resources", {}).get("GPU")
            }
        assert set(df["worker"]) == declared  # every task ran on the one worker that declared a GPU
    finally:
        dask_cluster.kill_worker(gpu_worker)


def test_tasks_asking_for_different_gpus_each_ask_dask_for_their_own(tmp_path, dask_cluster):
    """`resources.gpus: "{_gpus}"` (a param only placeholders see): the 2-GPU tasks land only on the worker
    that declares GPUs, the 0-GPU ones anywhere."""
    gpu_worker = dask_cluster.add_worker("--resources", "GPU=2")
    try:
        wait_for(lambda: dask_cluster.connected() == 3, what="the GPU worker")
        spec = dask_spec(tmp_path, dask_cluster.address, "{grid: {a: [1, 2, 3], _gpus: [2, 0]}}",
                         'resources: {gpus: "{_gpus}"}\n')
        run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
        df = run.results()
        assert set(df["status"]) == {"succeeded"} and len(df) == 6
        assert "GPU" not in run.info["engine"].get("resources", {})
        from distributed import Client

        with Client(dask_cluster.address, timeout=START_TIMEOUT_S, set_as_default=False) as client:
            declared = {
                a for a, w in client.scheduler_info()["workers"].items() if w.get("resources", {}).get("GPU")
            }
        assert set(df[df["_gpus"] == 2]["worker"]) == declared
    finally:
        dask_cluster.kill_worker(gpu_worker)


def test_resources_no_worker_declares_exit_2_with_the_worker_command(tmp_path, dask_cluster, capsys):
    spec = dask_spec(tmp_path, dask_cluster.address, "{grid: {a: [1, 2]}}", "resources: {memory_mib: 1024}\n")
    assert cli.main(["run", str(spec), "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no Dask worker declares MEMORY=1073741824" in err and "--resources" in err
    assert not list((tmp_path / "store").glob("runs/*/run.json"))


def test_median_rule_prunes_the_bad_curves_on_dask_with_the_local_engines_decision(tmp_path, dask_cluster):
    """Four tasks at once on the two workers (two threads each): the first four are good and run to the end;
    of the next four, the ones worse than their median are stopped (from step 2 on: min_steps) by the worker's
    own decision."""
    curve = Path(__file__).parent / "scripts" / "curve.py"
    spec = write_spec(tmp_path, f"""
        name: dask-curves
        script: {curve}
        params: {{grid: {{quality: [0.2, 0.3, 0.1, 0.15, 1.0, 2.0, 0.12, 1.5]}}, fixed: {{pace: 0.3, epochs: 10}}}}
        metrics: {{stdout: 'epoch (?P<step>\\d+) .*val_loss=(?P<val_loss>[\\d.]+)'}}
        stop: {{metric: val_loss, rule: median, min_steps: 2, min_trials: 2}}
        backend: dask
        dask: {{scheduler: "{dask_cluster.address}"}}
    """)  # noqa: E501
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    assert run.exit_code == 0
    statuses = run.statuses()
    pruned = {i for i, s in statuses.items() if s.state.value == "pruned"}
    # The clearly bad curves are always stopped and the best never are; the middling ones (0.2, 0.3) depend on
    # which tasks the workers finished first, so a loaded machine may stop one of them too.
    assert {4, 5, 7} <= pruned and not pruned & {2, 3, 6}
    assert_stopped_by_the_median_rule(run, pruned, epochs=10, bad={4, 5, 7})


def test_warm_tasks_fork_from_one_server_per_worker_process(tmp_path, dask_cluster):
    (tmp_path / "probe.py").write_text(textwrap.dedent("""\
        import argparse, json, os
        parser = argparse.ArgumentParser()
        parser.add_argument("--x", type=int)
        args = parser.parse_args()
        parent = open(f"/proc/{os.getppid()}/cmdline", "rb").read()
        # its parent is its reaper (a fork of the server: task/_reap.py), whose parent is the server
        reaper_parent = int(open(f"/proc/{os.getppid()}/stat").read().rsplit(")", 1)[1].split()[1])
        json.dump({"warm": b"batchsweep.task.warm" in parent, "server": reaper_parent,
                   "own_group": os.getpgid(0) == os.getpid()}, open("metrics.json", "w"))
        print("out", args.x)
    """))
    spec = write_spec(tmp_path, f"""
        name: warm-dask
        script: {tmp_path / 'probe.py'}
        params: {{grid: {{x: [1, 2, 3, 4, 5, 6, 7, 8]}}}}
        warm: true
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False, backend="dask",
                         **{"dask.scheduler": dask_cluster.address})
    df = run.results()
    assert set(df["status"]) == {"succeeded"} and df["warm"].all() and df["own_group"].all()
    servers = df.groupby("worker")["server"].nunique()
    assert (servers == 1).all(), "one fork server per worker process"
    assert df["server"].nunique() == df["worker"].nunique()
    assert run.logs(7) == "out 8\n"


def test_tasks_that_start_after_the_script_changed_are_not_recorded_for_reuse(tmp_path, dask_cluster):
    """The workers run the code directory as it is: a script edited between planning and the tasks' start is
    new code, so what they produce is never reused under the key the old script planned."""
    code = tmp_path / "code"
    code.mkdir()
    original = SCRIPT.read_text()
    (code / "task.py").write_text(original)
    spec = write_spec(code, f"""
        name: edited
        script: task.py
        params: {{grid: {{a: [1, 2]}}}}
        backend: dask
        dask: {{scheduler: "{dask_cluster.address}"}}
    """)
    store = tmp_path / "store"
    p = batchsweep.plan(spec)
    (code / "task.py").write_text(original + "# edited after planning\n")
    first = batchsweep.start(p, store=store)
    first.wait()
    assert list(first.results()["status"]) == ["succeeded"] * 2
    (code / "task.py").write_text(original)  # the script the run planned with
    again = batchsweep.run(spec, store=store, progress=False)
    assert again.record.reused == 0  # neither task ran the planned script
    (code / "task.py").write_text(original + "# edited after planning\n")
    edited = batchsweep.run(spec, store=store, progress=False)
    assert edited.record.reused == 0  # nor were they keyed by the edited one


SHIPPED = """
import argparse, json, os
p = argparse.ArgumentParser()
p.add_argument("--a", type=int)
a = p.parse_args().a
json.dump({"scaled": a * int(open("data.txt").read()), "file": os.path.abspath(__file__), "cwd": os.getcwd()},
          open("metrics.json", "w"))
"""


def test_an_s3_store_ships_code_and_inputs_so_workers_need_no_shared_filesystem(tmp_path, aws_env):
    """A cluster whose workers see none of the user's files (Coiled, dask-kubernetes): with an S3 store the
    workers fetch the code package and the inputs from it, as AWS Batch's containers do."""
    import boto3
    from dask_fixtures import DaskProcesses

    boto3.client("s3").create_bucket(Bucket="sweeps")
    project = tmp_path / "project"
    project.mkdir()
    (project / "task.py").write_text(SHIPPED)
    (project / "data.txt").write_text("7")
    spec = project / "sweep.yaml"
    cluster_dir = tmp_path / "cluster"
    cluster_dir.mkdir()
    # started here: its workers get the environment that reaches the emulator
    cluster = DaskProcesses(cluster_dir)
    try:
        cluster.ensure_workers(1)
        spec.write_text(textwrap.dedent(f"""
            name: shipped
            script: task.py
            params: {{grid: {{a: [1, 2, 3]}}}}
            inputs: [data.txt]
            backend: dask
            dask: {{scheduler: "{cluster.address}"}}
        """))
        run = batchsweep.run(spec, store="s3://sweeps/runs", progress=False)
        df = run.results().set_index("a")
    finally:
        cluster.stop()
    assert list(df["status"]) == ["succeeded"] * 3, df["error"].tolist()
    assert df["scaled"].to_dict() == {1: 7, 2: 14, 3: 21}
    # the package's copy
    assert not any(str(f).startswith(str(project)) for f in df["file"]), df["file"].tolist()
    assert run.store.url.startswith("s3://sweeps/")


def test_a_search_on_cluster_local_starts_one_cluster_for_all_its_rounds_and_stops_it(tmp_path, monkeypatch):
    import distributed

    started = []
    real = distributed.LocalCluster

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        started.append(real(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(distributed, "LocalCluster", counted)
    branin = Path(__file__).parent.parent / "examples" / "branin" / "branin.py"
    spec = write_spec(tmp_path, f"""
        name: dask-search
        script: {branin}
        params: {{fixed: {{}}}}
        search: {{trials: 6, batch: 2, metric: value, space: {{x1: "uniform(-5, 10)", x2: "uniform(0, 15)"}}}}
        backend: dask
        dask: {{cluster: local}}
        max_parallel: 2
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    assert run.exit_code == 0 and run.n_tasks == 6
    assert len(started) == 1  # three rounds, one cluster
    record = json.loads((tmp_path / "store" / "runs" / run.id / "engine.json").read_text())
    assert record["finished"] and record["scheduler"] == started[0].scheduler_address
    host, port = record["scheduler"].removeprefix("tcp://").rsplit(":", 1)
    with pytest.raises(OSError):  # stopped with the run's last round
        socket.create_connection((host, int(port)), timeout=1).close()


def test_a_search_whose_last_round_is_all_reused_stops_the_cluster_its_earlier_round_kept(tmp_path):
    branin = Path(__file__).parent.parent / "examples" / "branin" / "branin.py"
    spec = write_spec(tmp_path, f"""
        name: dask-search-reused
        script: {branin}
        params: {{fixed: {{}}}}
        search: {{trials: 4, batch: 2, metric: value, space: {{x1: [3.14], x2: [2.275]}}}}
        backend: dask
        dask: {{cluster: local}}
        max_parallel: 2
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    assert run.exit_code == 0 and run.n_tasks == 4
    assert [s.reused_from is not None for _, s in sorted(run.statuses().items())][2:] == [True, True]
    record = json.loads((tmp_path / "store" / "runs" / run.id / "engine.json").read_text())
    host, port = record["scheduler"].removeprefix("tcp://").rsplit(":", 1)
    with pytest.raises(OSError):  # stopped when the run ended, not a minute later
        socket.create_connection((host, int(port)), timeout=1).close()
