"""The local engine end to end, with real processes."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import alive, ctrl_c_reaches_children, write_spec

import batchsweep
from batchsweep.store.core import Store

SCRIPTS = Path(__file__).parent / "scripts"


def test_grid_over_script_that_writes_metrics_gives_one_row_per_task(tmp_path):
    spec = write_spec(tmp_path, f"""
        name: grid
        script: {SCRIPTS / 'writes_metrics.py'}
        params:
          grid: {{a: [1, 2, 3, 4], b: [0.5, 1, 2, 3, 4]}}
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    df = run.results()
    assert len(df) == 20
    assert set(df["status"]) == {"succeeded"}
    assert (df["product"] == df["a"] * df["b"]).all()
    assert list(df["task"]) == list(range(20))
    assert run.exit_code == 0


def test_script_that_only_prints_and_pickles_under_required_save_name(tmp_path):
    spec = write_spec(tmp_path, f"""
        name: printer
        script: {SCRIPTS / 'prints_result.py'}
        params:
          grid: {{var_a: [1, 2, 3, 4], var_b: [1, 2, 3, 4, 5]}}
          fixed: {{save_name: "run_{{var_a}}_{{var_b}}"}}
        metrics: {{stdout: last}}
        outputs: ["*.pkl"]
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    df = run.results()
    assert len(df) == 20 and set(df["status"]) == {"succeeded"}
    assert (df["value"] == df["var_a"] * df["var_b"]).all()
    row = df[(df.var_a == 3) & (df.var_b == 4)].iloc[0]
    assert list(row["outputs"]) == ["run_3_4.pkl"]
    store = Store.open(tmp_path / "store")
    pkl = store.local_path(store.task_key(run.id, int(row["task"]), "outputs", "run_3_4.pkl"))
    assert pickle.loads(pkl.read_bytes()) == {"sum": 7, "product": 12}


def test_metrics_from_stdout_regex_with_named_groups(tmp_path):
    spec = write_spec(tmp_path, f"""
        name: regex
        script: {SCRIPTS / 'prints_result.py'}
        params:
          grid: {{var_a: [5], var_b: [2]}}
          fixed: {{save_name: x}}
        metrics: {{stdout: 'loss=(?P<loss>-?[0-9.]+) acc=(?P<acc>[0-9.]+)'}}
    """)
    df = batchsweep.run(spec, store=tmp_path / "store", progress=False).results()
    assert df.loc[0, "loss"] == 3 and df.loc[0, "acc"] == pytest.approx(0.2)


def test_failing_and_hanging_tasks_are_contained(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    spec = write_spec(tmp_path, f"""
        name: contained
        script: {SCRIPTS / 'writes_metrics.py'}
        params:
          grid: {{a: [1, 2, 3, 4, 5, 6]}}
          fixed: {{fail_on: 2, hang_on: 4, pid_dir: "{pids}"}}
        timeout: 3s
        max_parallel: 6
    """)
    t0 = time.monotonic()
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    elapsed = time.monotonic() - t0
    # The hung task sleeps 600 s: a run far shorter did not wait it out (on a loaded machine the run's own
    # start, six interpreters, takes seconds more than the timeout's 3 s).
    assert elapsed < 300, "the run must not wait out a hung task"
    df = run.results().set_index("a")
    # its timeout, the kill's grace and the wait for the kill: from its start, not the run's
    assert df.loc[4, "duration_s"] < 3 + 8, "the hung task must end within seconds of its timeout"
    assert (
        df.loc[2, "status"] == "failed"
        and df.loc[2, "exit_code"] == 3
        and df.loc[2, "error"] == "exit code 3: failing on purpose"
    )
    assert df.loc[4, "status"] == "timeout" and df.loc[4, "error"] == "timeout after 3s"
    assert set(df.loc[[1, 3, 5, 6], "status"]) == {"succeeded"}
    assert run.exit_code == 1
    for name in ("4.pid", "4.child.pid"):
        assert not alive(int((pids / name).read_text())), f"{name} survived the timeout"
    assert "failing on purpose" in run.logs(1, stderr=True)


def test_a_framed_error_is_read_without_its_frame(tmp_path):
    # click and typer print a usage error inside a rich box when rich is installed: the box's bottom edge is
    # the last line, the message is the one above it, between the frame's sides.
    (tmp_path / "cli.py").write_text(
        "import sys\n"
        "sys.stderr.write(\"Usage: cli.py pi [OPTIONS]\\n\"\n"
        "                 \"╭─ Error ───────────────────────╮\\n\"\n"
        "                 \"│ No such option: --json-output │\\n\"\n"
        "                 \"╰───────────────────────────────╯\\n\")\n"
        "sys.exit(2)\n"
    )
    spec = write_spec(tmp_path, """
        name: framed
        script: cli.py
        args: {style: argv}
        params:
          grid: {x: [1]}
    """)
    df = batchsweep.run(spec, store=tmp_path / "store", progress=False).results()
    assert df.loc[0, "error"] == "exit code 2: No such option: --json-output"


def test_retries_are_counted_in_attempts(tmp_path):
    spec = write_spec(tmp_path, f"""
        name: retry
        script: {SCRIPTS / 'writes_metrics.py'}
        params: {{grid: {{a: [1, 2]}}, fixed: {{fail_on: 2}}}}
        retries: 2
    """)
    df = batchsweep.run(spec, store=tmp_path / "store", progress=False).results().set_index("a")
    assert df.loc[1, "attempts"] == 1
    assert df.loc[2, "attempts"] == 3 and df.loc[2, "status"] == "failed"


def test_function_tasks_run_in_child_processes_and_a_segfault_is_contained(tmp_path):
    spec = write_spec(tmp_path, """
        name: funcs
        function: funcs:crash
        params: {grid: {x: [1, 2, 3]}}
    """)
    (tmp_path / "funcs.py").write_text((SCRIPTS / "funcs.py").read_text())
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    df = run.results().set_index("x")
    assert df.loc[1, "y"] == 1 and df.loc[3, "y"] == 3
    assert df.loc[2, "status"] == "failed"
    assert "SEGV" in df.loc[2, "error"]


def test_function_returning_dict_becomes_metrics(tmp_path):
    (tmp_path / "funcs.py").write_text((SCRIPTS / "funcs.py").read_text())
    spec = write_spec(tmp_path, """
        name: square
        function: funcs:square
        params: {grid: {x: [1, 2, 3]}, fixed: {offset: 10}}
    """)
    df = batchsweep.run(spec, store=tmp_path / "store", progress=False).results()
    assert list(df["y"]) == [11, 14, 19]
    assert df["pid"].nunique() == 3 and os.getpid() not in set(df["pid"])


def _cli(tmp_path: Path, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "BATCHSWEEP_STORE": str(tmp_path / "store"), "CI": "true"}
    return subprocess.Popen([sys.executable, "-m", "batchsweep", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)




def test_ctrl_c_kills_children_and_leaves_run_resumable(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    spec = write_spec(tmp_path, f"""
        name: interrupted
        script: {SCRIPTS / 'writes_metrics.py'}
        params: {{grid: {{a: [1, 2, 3, 4]}}, fixed: {{hang_on: 1, pid_dir: "{pids}"}}}}
        max_parallel: 2
    """)
    with ctrl_c_reaches_children():  # as from a terminal, however pytest was started
        proc = _cli(tmp_path, "run", str(spec))
    deadline = time.monotonic() + 120
    while not (pids / "1.child.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=30)
    # a CLI that ignored the SIGINT must not outlive the test, nor its task (a process group of its own)
    finally:
        if proc.poll() is None:
            proc.kill()
            os.killpg(int((pids / "1.pid").read_text()), signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "resume" in err
    assert not alive(int((pids / "1.pid").read_text()))
    assert not alive(int((pids / "1.child.pid").read_text()))
    run = batchsweep.load_run(store=tmp_path / "store")
    df = run.results()
    assert df.set_index("a").loc[1, "status"] == "cancelled"




def test_a_function_gets_repeat_only_if_it_declares_it(tmp_path):
    (tmp_path / "funcs.py").write_text((SCRIPTS / "funcs.py").read_text())
    spec = write_spec(tmp_path, """
        name: repeated
        function: funcs:square
        params: {grid: {x: [2]}, repeat: 2}
    """)
    df = batchsweep.run(spec, store=tmp_path / "store", progress=False).results()
    assert list(df["repeat"]) == [0, 1] and list(df["y"]) == [4, 4] and set(df["status"]) == {"succeeded"}


def test_results_format_follows_the_output_file_extension(tmp_path):
    import pandas as pd

    from batchsweep import cli

    spec = write_spec(tmp_path, f"""
        name: formats
        script: {SCRIPTS / 'writes_metrics.py'}
        params: {{grid: {{a: [1, 2]}}}}
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    for name in ("r.parquet", "r.json", "r.csv"):
        assert (
            cli.main(["results", run.id, "-o", str(tmp_path / name), "--store", str(tmp_path / "store")]) == 0
        )
    assert list(pd.read_parquet(tmp_path / "r.parquet")["product"]) == [1.0, 2.0]
    assert [r["a"] for r in pd.read_json(tmp_path / "r.json").to_dict("records")] == [1, 2]
    assert pd.read_csv(tmp_path / "r.csv")["a"].tolist() == [1, 2]


def test_empty_logs_and_outputs_are_not_stored_and_read_as_empty(tmp_path):
    quiet = tmp_path / "quiet.py"
    quiet.write_text(
        "import argparse, json, sys\np = argparse.ArgumentParser(); p.add_argument('--a', type=int)\na = "
        "p.parse_args().a\nif a == 2: print('spoke')\njson.dump({'a2': a * a}, open('metrics.json', 'w'))\n"
    )
    spec = write_spec(tmp_path, f"""
        name: lean
        script: {quiet}
        params: {{grid: {{a: [1, 2]}}}}
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False)
    task_dirs = {
        int(p.name): sorted(f.name for f in p.iterdir())
        for p in (tmp_path / "store" / "runs" / run.id / "tasks").iterdir()
    }
    by_a = {row.a: row.task for row in run.results().itertuples()}
    assert task_dirs[by_a[1]] == ["metrics.json", "status.json"]
    assert task_dirs[by_a[2]] == ["metrics.json", "status.json", "stdout.log"]
    assert run.logs(by_a[1]) == "" and run.logs(by_a[1], stderr=True) == ""
    assert run.logs(by_a[2]) == "spoke\n"


GATED = """\
import argparse, os, sys, time
p = argparse.ArgumentParser()
p.add_argument("--a", type=int)
a = p.parse_args().a
if a < 2:
    sys.exit(3 * (a == 0))  # task 0 fails, task 1 succeeds
while not os.path.exists(os.environ["GATE"]):
    time.sleep(0.02)
"""


def test_a_foreground_runs_counts_are_kept_by_the_engine_as_statuses_are_written(tmp_path):
    from batchsweep.planning import plan as planning
    from batchsweep.runs import start as runs

    (tmp_path / "gated.py").write_text(GATED)
    gate = tmp_path / "gate"
    spec = write_spec(tmp_path, f"""
        name: gated
        script: gated.py
        params: {{grid: {{a: [0, 1, 2, 3, 4]}}}}
        max_parallel: 2
        env: {{GATE: "{gate}"}}
    """)
    run = runs.start(planning.plan(spec), store=tmp_path / "store", reuse=False)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            counts, progress = run.counts()
            if counts.get("running") == 2 and counts.get("failed") == counts.get("succeeded") == 1:
                break
            time.sleep(0.05)
        assert progress.counts is not None  # the engine's own counts: no pass over every task
        assert counts == {"failed": 1, "succeeded": 1, "running": 2, "pending": 1}
        # what the pass over every task finds: the same two running (Progress.running names them)
        assert counts == Counter(s.value for s in run.states_from(*run.snapshot()).values())
    finally:
        gate.touch()
    assert run.wait(progress=False) == 1
    counts, progress = run.counts()
    assert not progress.active and counts == {"failed": 1, "succeeded": 4}


def test_a_resumes_counts_take_the_tasks_it_does_not_run_from_the_store(tmp_path):
    """A resume runs some tasks; the engine counts those as it writes them and the others once, from the
    store."""
    (tmp_path / "mended.py").write_text(
        "import argparse, os, sys\np = argparse.ArgumentParser(); p.add_argument('--a', type=int)\n"
        "sys.exit(3 if p.parse_args().a == 0 and not os.path.exists(os.environ['MENDED']) else 0)\n")
    spec = write_spec(tmp_path, f"""
        name: again
        script: mended.py
        params: {{grid: {{a: [0, 1, 2, 3, 4]}}}}
        env: {{MENDED: "{tmp_path / 'mended'}"}}
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False, reuse=False)
    assert run.exit_code == 1 and run.counts()[0] == {"succeeded": 4, "failed": 1}
    (tmp_path / "mended").touch()
    resumed = batchsweep.Run(run.store, run.id)
    assert resumed.resume() == [0]
    assert resumed.wait(progress=False) == 0
    counts, progress = resumed.counts()
    assert progress.counts is not None and not progress.active  # the engine's own counts, to the end
    assert counts == {"succeeded": 5}


def test_the_runners_tasks_are_held_as_lines_and_read_back_whole():
    from batchsweep.engines.local.engine import TaskLines
    from batchsweep.model import Task

    tasks = [Task(5, {"x": 1.5, "s": "é"}, ("in.txt",), "k5"), Task(0, {"x": [1, 2], "y": None}), Task(2, {})]
    held = TaskLines(iter(tasks))
    assert len(held) == 3 and [held[t.index] for t in tasks] == tasks
    for missing in (1, 6, -1):
        with pytest.raises(KeyError):
            held[missing]


QUIET = """\
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("--a", type=int)
a = p.parse_args().a
json.dump({"a2": a * a}, open("metrics.json", "w"))
"""


def test_the_runner_holds_no_object_per_task(tmp_path, monkeypatch):
    """What a local run's runner holds does not grow by an object per task (a 100,000-task run stays under 300
    MB): with tracemalloc, no line of code holds a live block per task, neither once the tasks ran and the run
    compacted itself (the engine, the run and the CLI's frame still there) nor after the outcome is printed. A
    Task, a TaskStatus, a params dict or a command line kept per task each did."""
    import gc
    import tracemalloc

    from batchsweep import cli
    from batchsweep.cli import display
    from batchsweep.store import compact

    def sweep(name: str, n: int) -> Path:
        return write_spec(tmp_path, f"""
            name: {name}
            script: quiet.py
            params: {{grid: {{a: [{", ".join(map(str, range(n)))}]}}}}
            warm: true
        """, name=f"{name}.yaml")

    n = 300
    (tmp_path / "quiet.py").write_text(QUIET)
    monkeypatch.setattr(compact, "AUTO_COMPACT_TASKS", 2)  # it compacts itself at the end, as a big run does
    store = str(tmp_path / "store")
    # what is imported once is imported
    assert cli.main(["run", str(sweep("first", 3)), "--store", store]) == 0
    held = {}
    printed = display.print_outcome

    def snapshot() -> tracemalloc.Snapshot:
        gc.collect()  # what only waits for the cycle collector is not held
        return tracemalloc.take_snapshot()

    def outcome(run: batchsweep.Run) -> None:
        held["once the tasks ran"] = snapshot()
        printed(run)
        held["after the outcome"] = snapshot()

    monkeypatch.setattr(display, "print_outcome", outcome)
    tracemalloc.start()
    try:
        before = snapshot()
        assert cli.main(["run", str(sweep("many", n)), "--store", store, "--no-reuse"]) == 0
    finally:
        tracemalloc.stop()
    assert len(held) == 2 and list((tmp_path / "store" / "runs").glob("many-*/packs/*.jsonl"))
    for when, taken in held.items():
        grown = [s for s in taken.compare_to(before, "lineno") if s.count_diff >= n]
        assert not grown, f"{when}, lines holding a block per task: " + "; ".join(
            f"{s.traceback} {s.count_diff} blocks, {s.size_diff} bytes" for s in grown)


def test_the_runner_queues_no_future_per_task(tmp_path, monkeypatch):
    """Each of the runner's slots takes the next task when it is free: a future per task queued up front was
    ~100 MB at 100,000 tasks."""
    from concurrent.futures import ThreadPoolExecutor

    submitted = []
    real = ThreadPoolExecutor.submit
    monkeypatch.setattr(
        ThreadPoolExecutor,
        "submit",
        lambda self, fn, *a, **k: submitted.append(getattr(fn, "__name__", "")) or real(self, fn, *a, **k),
    )
    spec = write_spec(tmp_path, f"""
        name: slots
        script: {SCRIPTS / 'writes_metrics.py'}
        params: {{grid: {{a: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}}}}
        max_parallel: 2
    """)
    run = batchsweep.run(spec, store=tmp_path / "store", progress=False, reuse=False)
    assert run.exit_code == 0 and len(run.results()) == 10
    assert submitted.count("slot") == 2 and submitted.count("one") == 0


def test_a_task_started_while_a_cancel_is_under_way_is_killed_when_its_worker_tracks_it():
    """A SIGTERM landing between a task's start and its worker tracking it found nothing to kill: the task ran
    on and the worker waited for it (an AWS child stopped by Spot ran until ECS killed it 30 s later)."""
    from batchsweep.task.worker import ProcessRegistry

    registry = ProcessRegistry()
    registry.cancel_all("stopped by SIGTERM")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        registry.add(proc)
        assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()
