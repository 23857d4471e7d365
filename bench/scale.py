"""Scale: a 100,000-task sweep expands, writes its manifest and dry-runs in seconds, in little memory;
`batchsweep --help` starts fast.

    .venv/bin/python bench/scale.py               # 100,000 tasks
    .venv/bin/python bench/scale.py --tasks 20000

Prints seconds and peak RSS (VmHWM) for: planning (load, expand, check the script's flags), writing the run's
manifest (tasks.jsonl, run.json) to a local store, and `batchsweep run SPEC --dry-run` as a user runs it;
then the median wall time of `batchsweep --help`.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SCRIPT = """\
import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=int)
parser.add_argument("--y", type=int)
parser.add_argument("--fee_bps", type=float)
print(parser.parse_args())
"""


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def write_spec(root: Path, n: int) -> Path:
    (root / "task.py").write_text(SCRIPT)
    ys = 100 if n >= 100 else 1
    xs = n // ys
    spec = root / "sweep.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: scale
        script: task.py
        params:
          grid:
            x: [{", ".join(map(str, range(xs)))}]
            y: [{", ".join(map(str, range(ys)))}]
          fixed: {{fee_bps: 10}}
    """))
    return spec


def in_process(spec: Path, store: Path) -> None:
    """Plan and write the manifest here, so this process's peak RSS is the runner's."""
    from batchsweep import planning
    from batchsweep.store import Store

    t0 = time.perf_counter()
    p = planning.plan(spec)
    planned = time.perf_counter() - t0
    print(f"  plan (load, expand, check)   {len(p.tasks):>7} tasks {planned:6.2f} s  peak RSS {peak_rss_mb():5.0f} MB")
    t0 = time.perf_counter()
    Store.open(store).create_run(p.info["run_id"], p.info, p.tasks)
    written = time.perf_counter() - t0
    size = (store / "runs" / p.info["run_id"] / "tasks.jsonl").stat().st_size / 1e6
    print(f"  write manifest ({size:.1f} MB)     {written:6.2f} s  peak RSS {peak_rss_mb():5.0f} MB")


def dry_run(spec: Path) -> None:
    code = ("import resource, sys, time; t = time.perf_counter(); from batchsweep.cli import main; rc = main(sys.argv[1:]); "
            "sys.stdout.flush(); print(f'@@ {time.perf_counter() - t:.2f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}', "
            "file=sys.stderr); sys.exit(rc)")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, "run", str(spec), "--dry-run"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    seconds, mb = next(line for line in done.stderr.splitlines() if line.startswith("@@")).split()[1:]
    counted = next((line.split()[0] for line in done.stdout.splitlines() if "tasks" in line and "dry run" in line), "?")
    print(f"  batchsweep run --dry-run     {counted:>7} tasks {wall:6.2f} s  peak RSS {float(mb):5.0f} MB"
          f"  (in main: {seconds} s)")


def help_time(repeat: int = 7) -> None:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "batchsweep", "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    print(f"  batchsweep --help            median {statistics.median(times):.3f} s of {repeat} "
          f"(min {min(times):.3f} s; a bare `python -c pass` is part of it)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batchsweep-scale-") as tmp:
        root = Path(tmp)
        spec = write_spec(root, args.tasks)
        print(f"{args.tasks} tasks on {os.cpu_count()} cores:")
        dry_run(spec)
        in_process(spec, root / "store")
    help_time()
    return 0


if __name__ == "__main__":
    sys.exit(main())
