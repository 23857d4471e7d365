"""Warm start (the default, `warm: auto`; `warm: true` forces it): the fork server runs tasks as a cold start
would, and falls back where it cannot or, by default, where it finds sharing the imports unsafe."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import alive

import batchsweep
from batchsweep.store.core import Store
from batchsweep.task.warmserver import import_statements

EXAMPLES = Path(__file__).parent.parent / "examples"
# Each example's own spec, shrunk to 2-4 tasks (in-image needs a package only its task image has; the sklearn
# function sweep runs cold whatever `warm:` says; sweep_random runs sklearn's train.py again).
EXAMPLE_OVERRIDES = {
    "tutorial": ["var_a=1,2", "var_b=3,4"],
    "backtest": ["symbol=BTCUSDT,ETHUSDT", "fast=5", "slow=50,100"],
    "sklearn": ["n_estimators=10", "max_depth=4,8", "params.repeat=1"],
    "sklearn/sweep_stop.yaml": ["alpha=1.0e-5", "eta0=0.001,0.01", "params.fixed.epochs=3"],
    "branin": ["params.random.samples=3"],
}
# differ run to run
NOT_RESULTS = {
    "duration_s",
    "started_at",
    "ended_at",
    "worker",
    "fit_time_s",
    "peak_rss_mib",
    "cpu_s",
    "warm",
}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def run(spec: Path, store: Path, *overrides: str) -> batchsweep.Run:
    return batchsweep.run(spec, store=store, progress=False, overrides=list(overrides))


def output_bytes(store: Path, run_id: str, df: pd.DataFrame) -> dict[tuple[int, str], bytes]:
    s = Store.open(store)
    found = {}
    for task, outputs in zip(df["task"], df.get("outputs", [None] * len(df))):
        for name in outputs if outputs is not None else []:
            found[(task, name)] = s.local_path(s.task_key(run_id, int(task), "outputs", name)).read_bytes()
    return found


def server_pids(marker: str) -> list[int]:
    """Live fork servers whose command line names `marker` (a test's own script path)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"batchsweep.task.warmserver" in cmdline and marker.encode() in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.mark.parametrize("example", sorted(EXAMPLE_OVERRIDES))
def test_the_default_gives_the_same_results_as_cold_on_every_example(tmp_path, example, caplog):
    caplog.set_level(logging.DEBUG, logger="batchsweep")
    spec = EXAMPLES / example if example.endswith(".yaml") else EXAMPLES / example / "sweep.yaml"
    overrides = EXAMPLE_OVERRIDES[example]
    cold = run(spec, tmp_path / "cold", *overrides, "warm=false")
    warm = run(spec, tmp_path / "warm", *overrides)
    # the default was warm
    assert not [r.getMessage() for r in caplog.records if "warm start" in r.getMessage()]
    cold_df, warm_df = cold.results(), warm.results()
    assert 2 <= len(cold_df) <= 4
    assert set(cold_df["status"]) == {"succeeded"}
    columns = [c for c in cold_df.columns if c not in NOT_RESULTS]
    pd.testing.assert_frame_equal(cold_df[columns], warm_df[columns])
    assert output_bytes(tmp_path / "cold", cold.id, cold_df) == output_bytes(
        tmp_path / "warm", warm.id, warm_df
    )



SCRIPTS = Path(__file__).parent / "scripts"
# Every script under tests/scripts, as a sweep of 2-3 tasks (`metrics:` where it prints instead of writing a
# file).
SCRIPT_SWEEPS = {
    "adopted.py": "params: {grid: {_k: [1, 2]}}",
    "curve.py": "params: {grid: {quality: [0.1, 0.3]}, fixed: {epochs: 3, pace: 0}}\n"
    "metrics: {stdout: 'epoch (?P<step>\\d+) train_loss=[\\d.]+ val_loss=(?P<val_loss>[\\d.]+)'}",
    "curve.py --api": "params: {grid: {quality: [0.1, 0.3]}, fixed: {epochs: 3, pace: 0, api: true}}",
    "funcs.py": "params: {grid: {x: [2, 3]}}",
    "hostile_task.py": "params: {grid: {a: [1, 2]}, fixed: {xs: [3, 4]}}",
    "mlflow_curve.py": "params: {grid: {quality: [0.1, 0.3]}, fixed: {epochs: 2, folds: 1}}\nmetrics: "
    "{mlflow: true}",
    "prints_result.py": "params: {grid: {var_a: [1, 2], var_b: [5]}, fixed: {save_name: out}}\n"
    "metrics: {stdout: 'loss=(?P<loss>-?\\d+) acc=(?P<acc>[\\d.]+)'}",
    "resource_probe.py": "params: {grid: {i: [0, 1]}, fixed: {alloc-mib: 8, hold: 0}}\nmetrics: {stdout: "
    "last}",
    "u_echo.py": "params: {grid: {text: ['a b', '--x', 'é'], n: [1]}}",
    "u_target.py": "params: {grid: {window: [3, 7]}, fixed: {save_name: x}}",
    "writes_metrics.py": "params: {grid: {a: [1, 2, 3]}, fixed: {fail_on: 3}}",
}
DIFFER = {"start", "end", "pid", "adopter"}  # wall-clock times and pids: different run to run, warm or cold


def test_every_test_script_has_a_sweep():
    assert {name.split()[0] for name in SCRIPT_SWEEPS} == {p.name for p in SCRIPTS.glob("*.py")}


@pytest.mark.parametrize("name", sorted(SCRIPT_SWEEPS))
def test_the_default_gives_the_same_results_as_cold_on_every_test_script(tmp_path, name, caplog):
    caplog.set_level(logging.DEBUG, logger="batchsweep")
    script = name.split()[0]
    target = "function: funcs:square" if script == "funcs.py" else f"script: {SCRIPTS / script}"
    spec = write(tmp_path / "sweep.yaml", f"name: scripts\n{target}\n{SCRIPT_SWEEPS[name]}\n")
    if script == "funcs.py":
        spec.with_name("funcs.py").write_bytes((SCRIPTS / script).read_bytes())
    cold = run(spec, tmp_path / "cold", "warm=false")
    warm = run(spec, tmp_path / "warm")
    notes = [r.getMessage() for r in caplog.records if "warm start" in r.getMessage()]
    assert notes == (["warm start: function tasks run cold; running cold"] if script == "funcs.py" else []), (
        notes
    )
    cold_df, warm_df = cold.results(), warm.results()
    assert len(cold_df) >= 2 and "succeeded" in set(cold_df["status"])
    columns = [c for c in cold_df.columns if c not in NOT_RESULTS | DIFFER]
    pd.testing.assert_frame_equal(cold_df[columns], warm_df[columns])
    cold_out, warm_out = (
        output_bytes(tmp_path / "cold", cold.id, cold_df),
        output_bytes(tmp_path / "warm", warm.id, warm_df),
    )
    assert cold_out.keys() == warm_out.keys()
    # MLflow's ids and times differ
    same = [k for k in cold_out if not k[1].startswith(("mlflow.db", "mlruns"))]
    assert [cold_out[k] for k in same] == [warm_out[k] for k in same]
    if "start" not in cold_df:  # what the tasks printed (but times)
        assert [warm.logs(i) for i in range(len(cold_df))] == [cold.logs(i) for i in range(len(cold_df))]

def test_warm_tasks_run_in_the_fork_server_with_the_task_s_cwd_env_argv_and_own_process_group(tmp_path):
    script = write(tmp_path / "probe.py", """
        import argparse, json, os, sys
        parser = argparse.ArgumentParser()
        parser.add_argument("--x", type=int)
        args = parser.parse_args()
        json.dump({
            "warm": b"batchsweep.task.warm" in open(f"/proc/{os.getppid()}/cmdline", "rb").read(),
            "cwd_is_task_dir": os.getcwd() == os.environ["BATCHSWEEP_TASK_DIR"],
            "argv": " ".join(sys.argv[1:]),
            "name": __name__,
            "index": int(os.environ["BATCHSWEEP_TASK_INDEX"]),
            "greeting": os.environ["GREETING"],
            "own_group": os.getpgid(0) == os.getpid(),
            "stdin_empty": sys.stdin.read() == "",
            "path0_is_script_dir": sys.path[0] == os.path.dirname(os.path.realpath(__file__)),
        }, open("metrics.json", "w"))
        print("out", args.x)
        print("err", args.x, file=sys.stderr)
    """)
    spec = write(tmp_path / "sweep.yaml", f"""
        name: probe
        script: {script}
        params: {{grid: {{x: [1, 2, 3]}}}}
        env: {{GREETING: hello}}
    """)
    frames = {
        "warm": run(spec, tmp_path / "warm").results(),
        "cold": run(spec, tmp_path / "cold", "warm=false").results(),
    }
    warm, cold = frames["warm"], frames["cold"]
    assert list(warm["warm"]) == [True] * 3 and list(cold["warm"]) == [False] * 3
    same = ["status", "cwd_is_task_dir", "argv", "name", "index", "greeting", "own_group", "stdin_empty",
            "path0_is_script_dir"]
    pd.testing.assert_frame_equal(warm[same], cold[same])
    assert warm["cwd_is_task_dir"].all() and warm["own_group"].all() and warm["path0_is_script_dir"].all()
    assert list(warm["argv"]) == ["--x 1", "--x 2", "--x 3"] and set(warm["name"]) == {"__main__"}
    r = batchsweep.load_run(store=tmp_path / "warm")
    assert r.logs(2) == "out 3\n" and r.logs(2, stderr=True) == "err 3\n"


def test_warm_exit_codes_exceptions_and_timeouts_match_cold(tmp_path):
    script = write(tmp_path / "ends.py", """
        import argparse, sys, time
        parser = argparse.ArgumentParser()
        parser.add_argument("--how")
        how = parser.parse_args().how
        if how == "exit3":
            sys.exit(3)
        if how == "message":
            sys.exit("bad things")
        if how == "raise":
            raise ValueError("boom")
        if how == "sleep":
            time.sleep(600)
    """)
    spec = write(tmp_path / "sweep.yaml", f"""
        name: ends
        script: {script}
        params: {{grid: {{how: [ok, exit3, message, raise, sleep]}}}}
        timeout: 1s
    """)
    frames = {}
    for mode in ("cold", "warm"):
        started = time.monotonic()
        frames[mode] = run(spec, tmp_path / mode, *(["warm=false"] if mode == "cold" else [])).results()
        # far below the sleeping task's 600 s, however loaded the machine: its timeout stopped it
        assert time.monotonic() - started < 300
    cols = ["how", "status", "exit_code", "error"]
    pd.testing.assert_frame_equal(frames["warm"][cols], frames["cold"][cols])
    assert list(frames["warm"]["status"]) == ["succeeded", "failed", "failed", "failed", "timeout"]
    r = batchsweep.load_run(store=tmp_path / "warm")
    assert "ValueError: boom" in r.logs(3, stderr=True) and 'ends.py", line' in r.logs(3, stderr=True)
    assert "bad things" in r.logs(2, stderr=True)


def test_numpy_global_random_state_differs_between_warm_tasks_as_it_does_cold(tmp_path):
    script = write(tmp_path / "rand.py", """
        import argparse, json
        import numpy as np
        parser = argparse.ArgumentParser()
        parser.add_argument("--x", type=int)
        parser.parse_args()
        json.dump({"r": float(np.random.rand())}, open("metrics.json", "w"))
    """)
    spec = write(tmp_path / "sweep.yaml", f"""
        name: rand
        script: {script}
        params: {{grid: {{x: [1, 2, 3, 4]}}}}
        warm: true
    """)
    df = run(spec, tmp_path / "store").results()
    assert df["r"].nunique() == 4


def test_function_tasks_fall_back_to_cold_with_one_warning(tmp_path, caplog):
    """One warning on the batchsweep logger (the CLI prints it on stderr as `warning: ...`)."""
    write(tmp_path / "fn.py", """
        def square(x):
            return {"y": x * x}
    """)
    spec = write(tmp_path / "sweep.yaml", """
        name: fn
        function: fn:square
        params: {grid: {x: [2, 3]}}
        warm: true
    """)
    df = run(spec, tmp_path / "store").results()
    assert list(df["y"]) == [4, 9]
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("batchsweep")]
    assert warnings.count("warm start: function tasks run cold; running cold") == 1


def test_imports_that_start_threads_fall_back_to_cold(tmp_path, caplog):
    write(tmp_path / "lib" / "threaded_lib.py", """
        import threading, time
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    """)
    script = write(tmp_path / "code" / "uses_threads.py", """
        import argparse, json, os
        import threaded_lib
        parser = argparse.ArgumentParser()
        parser.add_argument("--x", type=int)
        parser.parse_args()
        warm = b"batchsweep.task.warm" in open(f"/proc/{os.getppid()}/cmdline", "rb").read()
        json.dump({"warm": warm}, open("metrics.json", "w"))
    """)
    spec = write(tmp_path / "sweep.yaml", f"""
        name: threads
        script: {script}
        params: {{grid: {{x: [1, 2]}}}}
        env: {{PYTHONPATH: {tmp_path / 'lib'}}}
        warm: true
    """)
    df = run(spec, tmp_path / "store").results()
    assert list(df["status"]) == ["succeeded"] * 2 and not df["warm"].any()
    assert any("warm start: the script's imports start threads" in r.getMessage() for r in caplog.records)
    assert server_pids(str(script)) == []


def test_the_fork_server_ends_with_the_run(tmp_path):
    script = write(tmp_path / "quick.py", """
        import argparse
        parser = argparse.ArgumentParser()
        parser.add_argument("--x", type=int)
        parser.parse_args()
    """)
    spec = write(tmp_path / "sweep.yaml", f"""
        name: quick
        script: {script}
        params: {{grid: {{x: [1, 2, 3]}}}}
        warm: true
    """)
    assert run(spec, tmp_path / "store").exit_code == 0
    assert server_pids(str(script)) == []


def test_the_fork_server_ends_when_the_runner_is_killed(tmp_path):
    script = write(tmp_path / "slow.py", """
        import argparse, time
        parser = argparse.ArgumentParser()
        parser.add_argument("--x", type=int)
        parser.parse_args()
        time.sleep(2)
    """)
    spec = write(tmp_path / "sweep.yaml", f"""
        name: slow
        script: {script}
        params: {{grid: {{x: [1, 2, 3, 4, 5, 6]}}}}
        max_parallel: 1
        warm: true
    """)
    r = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    runner = Store.open(tmp_path / "store").read_json(f"runs/{r.id}/engine.json")["pid"]
    deadline = time.monotonic() + 120
    while not server_pids(str(script)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server_pids(str(script))
    os.kill(runner, signal.SIGKILL)
    deadline = time.monotonic() + 120  # its own: the wait above may have used most of the first
    while server_pids(str(script)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server_pids(str(script)) == []


@pytest.mark.parametrize(("flag", "recorded"), [("--warm", True), ("--no-warm", False), (None, "auto")])
def test_run_warm_flags_set_warm_in_the_run(tmp_path, flag, recorded):
    script = write(tmp_path / "quick.py", """
        import argparse
        parser = argparse.ArgumentParser()
        parser.add_argument("--x", type=int)
        parser.parse_args()
    """)
    spec = write(tmp_path / "sweep.yaml", f"""
        name: flag
        script: {script}
        params: {{grid: {{x: [1]}}}}
    """)
    done = subprocess.run([sys.executable, "-m", "batchsweep", "run", str(spec), *([flag] if flag else []),
                           "--store", str(tmp_path / "store")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert batchsweep.load_run(store=tmp_path / "store").info["spec"]["warm"] == recorded
    assert "warm" not in done.stderr  # a single task runs cold by default: a debug line, not shown


def test_only_module_level_absolute_imports_are_preloaded():
    source = textwrap.dedent("""
        from __future__ import annotations
        import os, json as j
        from collections import OrderedDict
        from . import sibling
        try:
            import numpy
        except ImportError:
            numpy = None
        SEED = 3
        def main():
            import pandas
        if False:
            import sklearn
        import scipy
    """)
    found = [type(n).__name__ for n in import_statements(source, "s.py")]
    assert found == ["Import", "ImportFrom", "Import"]


@pytest.mark.parametrize("first", ["sys.path.insert(0, 'vendor')", "os.environ['OMP_NUM_THREADS'] = '1'",
                                   "matplotlib.use('Agg')", "def f(): pass", "x = compute()"])
def test_preloading_stops_at_the_first_statement_that_may_change_what_an_import_does(first):
    source = f"import os, sys\nimport matplotlib\n{first}\nimport numpy\n"
    assert [n.names[0].name for n in import_statements(source, "s.py")] == ["os", "matplotlib"]


IN_FORK_SERVER = 'b"batchsweep.task.warm" in open(f"/proc/{os.getppid()}/cmdline", "rb").read()'
# Imports the default (`auto`) finds unsafe to share between tasks: each runs cold; `warm: true` still forks
# them.
UNSAFE_IMPORTS = {
    "socket": ("import socket\nconnection = socket.socket()\n", "open sockets (1)"),
    "environment": (
        "import os\nINDEX = os.environ.get('BATCHSWEEP_TASK_INDEX')\n",
        "read BATCHSWEEP_TASK_INDEX, which each task sets for itself",
    ),
    "process": ("import subprocess\nhelper = subprocess.Popen(['sleep', '30'])\n", "start processes (1)"),
    "fork-unsafe module": (None, "imports tensorflow, which is not fork-safe"),
    "random draw": (
        "import random\nTOKEN = random.random()\n",
        "draw random numbers (random, by unsafe_lib)",
    ),
    "numpy draw": (
        "import numpy as np\nTOKEN = float(np.random.rand())\n",
        "draw random numbers (numpy.random)",
    ),
}


def _sweep_importing(tmp_path: Path, module: str, lib_source: str | None) -> tuple[Path, Path]:
    """A script in code/ importing `module` from lib/ (on PYTHONPATH: installed, not beside the script)."""
    if lib_source is None:  # a stand-in for the real package, under its name
        write(tmp_path / "lib" / module / "__init__.py", "VERSION = '0'\n")
    else:
        write(tmp_path / "lib" / f"{module}.py", lib_source)
    script = write(tmp_path / "code" / "uses.py", f"""
        import argparse, json, os
        import {module}
        parser = argparse.ArgumentParser()
        parser.add_argument("--x", type=int)
        args = parser.parse_args()
        json.dump({{"warm": {IN_FORK_SERVER}, "index": getattr({module}, "INDEX", None)}}, open("metrics.json", "w"))
    """)  # noqa: E501
    spec = write(tmp_path / "sweep.yaml", f"""
        name: unsafe
        script: {script}
        params: {{grid: {{x: [1, 2]}}}}
        env: {{PYTHONPATH: {tmp_path / 'lib'}}}
    """)
    return script, spec


@pytest.mark.parametrize("kind", sorted(UNSAFE_IMPORTS))
def test_by_default_imports_unsafe_to_share_run_cold_with_a_debug_line_and_warm_true_forces_warm(
    tmp_path, kind, caplog
):
    caplog.set_level(logging.DEBUG, logger="batchsweep")
    lib_source, reason = UNSAFE_IMPORTS[kind]
    module = "tensorflow" if lib_source is None else "unsafe_lib"
    script, spec = _sweep_importing(tmp_path, module, lib_source)
    df = run(spec, tmp_path / "default").results()
    assert list(df["status"]) == ["succeeded"] * 2 and not df["warm"].any()
    notes = [(r.levelno, r.getMessage()) for r in caplog.records if "warm start" in r.getMessage()]
    assert len(notes) == 1 and notes[0][0] == logging.DEBUG and reason in notes[0][1], notes
    assert server_pids(str(script)) == []
    if kind == "environment":  # cold, each task read its own index at import
        assert list(df["index"]) == [0, 1]
    if kind == "process":
        return  # forced, the server's helper would outlive the test
    caplog.clear()
    forced = run(spec, tmp_path / "forced", "warm=true").results()
    assert list(forced["status"]) == ["succeeded"] * 2 and forced["warm"].all()
    assert not [r for r in caplog.records if "warm start" in r.getMessage()]


def test_imports_after_a_statement_that_may_change_them_are_left_to_each_task(tmp_path):
    """`os.environ[...] = ...` (or `sys.path.insert`) before an import: the import must see it, as it does
    cold."""
    write(tmp_path / "lib" / "reads_env.py", """
        import os
        THREADS = os.environ.get("MY_THREADS")
    """)
    script = write(tmp_path / "code" / "sets_env.py", f"""
        import argparse, json, os
        os.environ["MY_THREADS"] = "1"
        import reads_env
        parser = argparse.ArgumentParser()
        parser.add_argument("--x", type=int)
        parser.parse_args()
        json.dump({{"warm": {IN_FORK_SERVER}, "threads": reads_env.THREADS}}, open("metrics.json", "w"))
    """)
    spec = write(tmp_path / "sweep.yaml", f"""
        name: order
        script: {script}
        params: {{grid: {{x: [1, 2]}}}}
        env: {{PYTHONPATH: {tmp_path / 'lib'}}}
    """)
    df = run(spec, tmp_path / "store").results()
    assert df["warm"].all() and list(df["threads"]) == [1, 1]


def test_by_default_a_single_task_runs_cold(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="batchsweep")
    script = write(tmp_path / "one.py", f"""
        import argparse, json, os
        parser = argparse.ArgumentParser()
        parser.add_argument("--x", type=int)
        parser.parse_args()
        json.dump({{"warm": {IN_FORK_SERVER}}}, open("metrics.json", "w"))
    """)
    spec = write(tmp_path / "sweep.yaml", f"""
        name: one
        script: {script}
        params: {{grid: {{x: [1]}}}}
    """)
    assert not run(spec, tmp_path / "default").results()["warm"].any()
    assert run(spec, tmp_path / "forced", "warm=true").results()["warm"].all()
    assert [r.levelno for r in caplog.records if "warm start" in r.getMessage()] == [logging.DEBUG]


def test_a_grandchild_a_warm_task_forks_without_exec_dies_with_the_task_as_a_cold_one_does(tmp_path):
    """No orphans: the reaper finds a task's processes by the token in the environment they started with,
    which a forked task (and what it forks) shares with the fork server unless the server's child writes it
    in."""
    pids = tmp_path / "pids"
    pids.mkdir()
    script = write(tmp_path / "forks.py", f"""
        import argparse, json, os, time
        parser = argparse.ArgumentParser()
        parser.add_argument("--x", type=int)
        parser.add_argument("--mode")
        args = parser.parse_args()
        json.dump({{"warm": {IN_FORK_SERVER}}}, open("metrics.json", "w"))
        pid_file = os.path.join("{pids}", f"{{args.mode}}-{{args.x}}")
        if os.fork() == 0:  # a daemon: its own session, its parent gone, no exec
            os.setsid()
            if os.fork() == 0:
                open(pid_file + ".tmp", "w").write(str(os.getpid()))
                os.rename(pid_file + ".tmp", pid_file)
                time.sleep(60)
            os._exit(0)
        while not os.path.exists(pid_file):
            time.sleep(0.01)
    """)
    spec = write(tmp_path / "sweep.yaml", f"""
        name: forks
        script: {script}
        params: {{grid: {{x: [1, 2]}}}}
    """)
    cold = run(spec, tmp_path / "cold", "warm=false", "params.fixed.mode=cold").results()
    warm = run(spec, tmp_path / "warm", "params.fixed.mode=warm").results()
    assert not cold["warm"].any() and warm["warm"].all()
    daemons = {p.name: int(p.read_text()) for p in pids.iterdir()}
    assert sorted(daemons) == ["cold-1", "cold-2", "warm-1", "warm-2"]
    assert [name for name, pid in daemons.items() if alive(pid)] == []


@pytest.mark.parametrize("draw", ["import random\nTOKEN = random.random()\n",
                                  "import numpy as np\nTOKEN = float(np.random.rand())\n"])
def test_a_library_that_draws_at_import_gives_each_task_its_own_draw_as_cold_tasks_do(tmp_path, draw):
    write(tmp_path / "lib" / "drawer.py", draw)
    script = write(tmp_path / "code" / "uses.py", """
        import argparse, json
        import drawer
        import numpy as np
        parser = argparse.ArgumentParser()
        parser.add_argument("--x", type=int)
        parser.parse_args()
        json.dump({"token": drawer.TOKEN, "later": float(np.random.rand())}, open("metrics.json", "w"))
    """)
    spec = write(tmp_path / "sweep.yaml", f"""
        name: draws
        script: {script}
        params: {{grid: {{x: [1, 2, 3, 4]}}}}
        env: {{PYTHONPATH: {tmp_path / 'lib'}}}
    """)
    r = run(spec, tmp_path / "store")
    df = r.results()
    assert df["token"].nunique() == 4 and df["later"].nunique() == 4
    assert df["warm"].tolist() == [False] * 4  # cold: the draw is each task's own


def test_results_say_which_tasks_ran_warm_and_status_why_the_rest_ran_cold(tmp_path, capsys):
    from batchsweep import cli

    script = write(tmp_path / "plain.py", """
        import argparse, json
        parser = argparse.ArgumentParser()
        parser.add_argument("--x", type=int)
        parser.parse_args()
        json.dump({"y": 1}, open("metrics.json", "w"))
    """)
    spec = write(tmp_path / "sweep.yaml", f"""
        name: plain
        script: {script}
        params: {{grid: {{x: [1, 2, 3]}}}}
    """)
    warm = run(spec, tmp_path / "store")
    cold = run(spec, tmp_path / "store", "warm=false", "params.grid.x=4,5")
    assert warm.results()["warm"].tolist() == [True] * 3 and cold.results()["warm"].tolist() == [False] * 2
    capsys.readouterr()
    assert cli.main(["status", warm.id, "--store", str(tmp_path / "store")]) == 0
    assert "warm     3 of 3 ran warm\n" in capsys.readouterr().out
    assert cli.main(["status", cold.id, "--store", str(tmp_path / "store")]) == 0
    assert "warm     0 of 2 ran warm; 2 cold: the spec says warm: false\n" in capsys.readouterr().out


def test_the_package_a_script_is_part_of_is_imported_by_each_task_not_by_the_fork_server(tmp_path):
    # `wine_quality/main_train.py` importing `wine_quality` (MLflow's wine example): the package's module code
    # (an MLflow client on ./mlruns, a timestamp) must run in the task's directory, as it does cold
    write(tmp_path / "pkg" / "settings.py", """
        import os
        IMPORTED_IN = os.getcwd()
    """)
    write(tmp_path / "pkg" / "main.py", """
        import argparse, json, os
        from pkg import settings
        parser = argparse.ArgumentParser()
        parser.add_argument("--x", type=int)
        parser.parse_args()
        json.dump({"imported_here": settings.IMPORTED_IN == os.getcwd()}, open("metrics.json", "w"))
    """)
    spec = write(tmp_path / "sweep.yaml", """
        name: own-package
        script: pkg/main.py
        params: {grid: {x: [1, 2]}}
        env: {PYTHONPATH: .}
        warm: true
    """)
    df = run(spec, tmp_path / "store").results()
    assert list(df["status"]) == ["succeeded"] * 2 and df["warm"].all()
    assert df["imported_here"].tolist() == [True, True]
