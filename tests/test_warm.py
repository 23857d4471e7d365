"""Warm start (`warm: true`): the fork server runs tasks as a cold start would, and falls back where it cannot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

import batchsweep
from batchsweep.store import Store
from batchsweep.warm import import_statements

EXAMPLES = Path(__file__).parent.parent / "examples"
# Each example's own spec, shrunk to 2-4 tasks.
EXAMPLE_OVERRIDES = {
    "tutorial": ["var_a=1,2", "var_b=3,4"],
    "backtest": ["symbol=BTCUSDT,ETHUSDT", "fast=5", "slow=50,100"],
    "sklearn": ["n_estimators=10", "max_depth=4,8", "params.repeat=1"],
    "branin": ["params.random.samples=3"],
}
NOT_RESULTS = {"duration_s", "started_at", "ended_at", "worker", "fit_time_s", "peak_rss_mib", "cpu_s"}  # differ run to run


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
        if b"batchsweep.warm" in cmdline and marker.encode() in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.mark.parametrize("example", sorted(EXAMPLE_OVERRIDES))
def test_warm_gives_the_same_results_as_cold_on_every_example(tmp_path, example):
    spec = EXAMPLES / example / "sweep.yaml"
    overrides = EXAMPLE_OVERRIDES[example]
    cold = run(spec, tmp_path / "cold", *overrides)
    warm = run(spec, tmp_path / "warm", *overrides, "warm=true")
    cold_df, warm_df = cold.results(), warm.results()
    assert 2 <= len(cold_df) <= 4
    assert set(cold_df["status"]) == {"succeeded"}
    columns = [c for c in cold_df.columns if c not in NOT_RESULTS]
    pd.testing.assert_frame_equal(cold_df[columns], warm_df[columns])
    assert output_bytes(tmp_path / "cold", cold.id, cold_df) == output_bytes(tmp_path / "warm", warm.id, warm_df)


def test_warm_tasks_run_in_the_fork_server_with_the_task_s_cwd_env_argv_and_own_process_group(tmp_path):
    script = write(tmp_path / "probe.py", """
        import argparse, json, os, sys
        parser = argparse.ArgumentParser()
        parser.add_argument("--x", type=int)
        args = parser.parse_args()
        json.dump({
            "warm": b"batchsweep.warm" in open(f"/proc/{os.getppid()}/cmdline", "rb").read(),
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
    frames = {mode: run(spec, tmp_path / mode, f"warm={mode == 'warm'}").results() for mode in ("cold", "warm")}
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
            time.sleep(30)
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
        frames[mode] = run(spec, tmp_path / mode, f"warm={mode == 'warm'}").results()
        assert time.monotonic() - started < 20
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
        warm = b"batchsweep.warm" in open(f"/proc/{os.getppid()}/cmdline", "rb").read()
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
    deadline = time.monotonic() + 30
    while not server_pids(str(script)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server_pids(str(script))
    os.kill(runner, signal.SIGKILL)
    while server_pids(str(script)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server_pids(str(script)) == []


def test_run_warm_flag_sets_warm_in_the_run(tmp_path):
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
    done = subprocess.run([sys.executable, "-m", "batchsweep", "run", str(spec), "--warm", "--store",
                           str(tmp_path / "store")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert batchsweep.load_run(store=tmp_path / "store").info["spec"]["warm"] is True


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
        def main():
            import pandas
        if False:
            import sklearn
    """)
    found = [type(n).__name__ for n in import_statements(source, "s.py")]
    assert found == ["Import", "ImportFrom", "Import"]
