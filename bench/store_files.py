"""Store files: what a big finished local run leaves in the store, and `logs RUN TASK` of it.

    .venv/bin/python bench/store_files.py [--tasks 12000] [--sample 500]

Runs `batchsweep run SPEC --warm --max-parallel CORES --no-reuse` of a trivial script that prints a line per
task (its stdout) and one to stderr for every tenth task, in a new store. Then prints the files the store
holds against the layout of one log file per task (what the run's outputs would be without log packs: a
stdout.log per task and a stderr.log per tenth task, besides the run's own files), side by side with their
ratio. Then every task's output read back with `Run.logs` (each one checked against what the task printed),
and `--sample` tasks' output read through `Run.logs` against a plain `read_bytes` of a file per task (the
peer: the same bytes written as one file per task by this bench), microseconds per task, and `batchsweep logs
RUN TASK` in a new process.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SCRIPT = """\
import argparse
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=int)
parser.add_argument("--y", type=int)
args = parser.parse_args()
print(f"task x={args.x} y={args.y} says hello")
if args.y % 10 == 0:
    print(f"task x={args.x} y={args.y} warns", file=sys.stderr)
"""


def write_spec(root: Path, n: int) -> Path:
    (root / "task.py").write_text(SCRIPT)
    ys = 100 if n >= 100 else n
    spec = root / "sweep.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: store-files
        script: task.py
        params:
          grid:
            x: [{", ".join(map(str, range(n // ys)))}]
            y: [{", ".join(map(str, range(ys)))}]
    """))
    return spec


def files_under(root: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(root))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=12_000)
    parser.add_argument("--sample", type=int, default=500)
    args = parser.parse_args()
    import batchsweep

    with tempfile.TemporaryDirectory(prefix="bench-store-files-") as tmp:
        root = Path(tmp)
        spec = write_spec(root, args.tasks)
        store = root / "store"
        cores = os.cpu_count() or 1
        argv = [sys.executable, "-m", "batchsweep", "run", str(spec), "--warm", "--max-parallel", str(cores),
                "--store", str(store), "--no-reuse"]
        print(f"batchsweep {' '.join(argv[3:])}", flush=True)
        t0 = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            print(done.stdout, done.stderr, file=sys.stderr)
            return 1
        run_dir = next((store / "runs").iterdir())
        run = batchsweep.load_run(run_dir.name, store=str(store))
        n = run.n_tasks
        expected = {}
        for t in run.tasks():
            x, y = t.params["x"], t.params["y"]
            expected[t.index] = (
                f"task x={x} y={y} says hello\n",
                f"task x={x} y={y} warns\n" if y % 10 == 0 else "",
            )
        print(
            f"  ran {n:,} tasks in {wall:.1f} s ({n / wall:.0f} tasks/s, load average "
            f"{os.getloadavg()[0]:.1f})"
        )

        in_store, in_run = files_under(store), files_under(run_dir)
        logs = sum(1 for out, err in expected.values() for s in (out, err) if s)
        peer = in_run - files_under(run_dir / "tasks") + logs + (in_store - in_run)
        print(
            f"  store files                  {in_store:>7,} ({in_store / n:.3f} per task; the run's "
            f"directory {in_run:,})"
        )
        print(
            f"  one log file per task        {peer:>7,} ({peer / n:.3f} per task: {logs:,} logs + the run's "
            f"other files) -> {peer / in_store:.1f}x fewer files"
        )
        run_peer = peer - (in_store - in_run)
        print(
            f"  the run's own directory      {in_run:>7,} files ({in_run / n:.4f} per task) against "
            f"{run_peer:,} with a log file per task -> {run_peer / in_run:.0f}x fewer (the rest of the "
            "store: the reuse index, at most 256 files shared by every run)"
        )

        t0 = time.perf_counter()
        wrong = sum(
            run.logs(i) != out or run.logs(i, stderr=True) != err for i, (out, err) in expected.items()
        )
        every = time.perf_counter() - t0
        print(f"  every task's stdout + stderr read back with Run.logs: {2 * n:,} reads in {every:.2f} s, "
              f"{wrong} wrong")

        sample = random.Random(0).sample(range(n), min(args.sample, n))
        plain = root / "plain"
        for i in sample:
            (plain / str(i)).mkdir(parents=True)
            (plain / str(i) / "stdout.log").write_text(expected[i][0])
        fresh = batchsweep.load_run(run.id, store=str(store))
        t0 = time.perf_counter()
        for i in sample:
            fresh.logs(i)
        ours = (time.perf_counter() - t0) / len(sample)
        t0 = time.perf_counter()
        for i in sample:
            (plain / str(i) / "stdout.log").read_bytes().decode()
        theirs = (time.perf_counter() - t0) / len(sample)
        print(
            f"  Run.logs(i), {len(sample)} random tasks   {ours * 1e6:7.0f} us per task; a file per task "
            f"read with read_bytes {theirs * 1e6:5.0f} us -> {ours / theirs:.1f}x its time"
        )
        last = n - 1
        t0 = time.perf_counter()
        shown = subprocess.run(
            [sys.executable, "-m", "batchsweep", "logs", run.id, str(last), "--store", str(store)],
            capture_output=True,
            text=True,
        )
        cli = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import batchsweep.cli"], capture_output=True)
        start_up = time.perf_counter() - t0
        ok = shown.stdout == expected[last][0]
        print(
            f"  batchsweep logs {run.id} {last}  {cli:.2f} s in a new process ({start_up:.2f} s of it "
            f"importing batchsweep.cli), output {'right' if ok else 'WRONG: ' + repr(shown.stdout[:80])}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
