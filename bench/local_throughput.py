"""Local throughput: batchsweep (cold, default, warm) against GNU parallel, xargs -P and joblib, in one run.

    .venv/bin/python bench/local_throughput.py                 # 2,000 trivial tasks, 200 pandas/numpy tasks
    .venv/bin/python bench/local_throughput.py --tasks 200 --heavy-tasks 40

Every runner executes the same command per task, `python SCRIPT --x N`, with `cores` tasks at once. batchsweep
is timed end to end through its CLI (`batchsweep run --no-reuse`: plan, flag introspection, store writes,
progress; without `--no-reuse` a second round would reuse the first round's results and run nothing):
`--no-warm` (cold: a process per task), no flag (the default, `warm: auto`) and `--warm` (forced). Setup
installs GNU parallel (`apt-get install -y parallel`) and joblib (pip, into this interpreter) when missing.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from common import HEAVY

PY = sys.executable

TRIVIAL = '''\
import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=int, required=True)
args = parser.parse_args()
print(args.x * 2)
'''



def ensure_tools() -> None:
    if shutil.which("parallel") is None:
        print("setup: installing GNU parallel (apt-get install -y parallel)", file=sys.stderr)
        if subprocess.run(["apt-get", "install", "-y", "parallel"], capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "parallel"], check=True, capture_output=True)
    try:
        import joblib  # noqa: F401
    except ImportError:
        print("setup: installing joblib (pip)", file=sys.stderr)
        subprocess.run([PY, "-m", "pip", "install", "-q", "joblib"], check=True)


def write_spec(root: Path, name: str, script: Path, n: int) -> Path:
    spec = root / f"{name}.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: {name}
        script: {script}
        params:
          grid:
            x: [{", ".join(map(str, range(n)))}]
    """))
    return spec


def by_batchsweep(root: Path, name: str, script: Path, n: int, jobs: int, *, flag: str | None) -> None:
    spec = write_spec(root, name, script, n)
    store = root / f"store-{name}-{flag or 'default'}"
    cmd = [
        PY,
        "-m",
        "batchsweep",
        "run",
        str(spec),
        "--store",
        str(store),
        "--max-parallel",
        str(jobs),
        "--no-reuse",
    ]
    done = subprocess.run([*cmd, *([flag] if flag else [])], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"batchsweep failed ({done.returncode}): {done.stderr[-2000:]}")


def by_parallel(root: Path, script: Path, n: int, jobs: int) -> None:
    lines = "".join(f"{i}\n" for i in range(n))
    subprocess.run(["parallel", "-j", str(jobs), "--halt", "now,fail=1", PY, str(script), "--x", "{}"],
                   input=lines, text=True, cwd=root, check=True, stdout=subprocess.DEVNULL)


def by_xargs(root: Path, script: Path, n: int, jobs: int) -> None:
    lines = "".join(f"{i}\n" for i in range(n))
    subprocess.run(["xargs", "-P", str(jobs), "-I{}", PY, str(script), "--x", "{}"],
                   input=lines, text=True, cwd=root, check=True, stdout=subprocess.DEVNULL)


def _one(script: str, x: int) -> int:
    return subprocess.run([PY, script, "--x", str(x)], capture_output=True).returncode


def by_joblib(root: Path, script: Path, n: int, jobs: int) -> None:
    from joblib import Parallel, delayed

    codes = Parallel(n_jobs=jobs)(delayed(_one)(str(script), i) for i in range(n))
    if any(codes):
        raise RuntimeError("joblib: a task failed")


def children_cpu() -> float:
    """User + system CPU seconds of every child this process has waited for (and their waited-for
    children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    """Wall seconds, and CPU seconds of the children it waited for (the runner and the tasks it ran)."""
    cpu0, t0 = children_cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, children_cpu() - cpu0


def script_cpu(root: Path, script: Path, runs: int = 5) -> float:
    """CPU seconds of one `python SCRIPT --x 0` on its own: no runner can spend less per task, so n tasks on
    `jobs` cores take at least n x this / jobs seconds, however little the runner adds."""
    cpu0 = children_cpu()
    for _ in range(runs):
        subprocess.run([PY, str(script), "--x", "0"], cwd=root, check=True, stdout=subprocess.DEVNULL)
    return (children_cpu() - cpu0) / runs


def bench(
    root: Path, label: str, script: Path, n: int, jobs: int, only: set[str], rounds: int
) -> dict[str, float]:
    runners: dict[str, Callable[[], None]] = {
        "batchsweep cold": lambda: by_batchsweep(root, label, script, n, jobs, flag="--no-warm"),
        "batchsweep default": lambda: by_batchsweep(root, label, script, n, jobs, flag=None),
        "batchsweep warm": lambda: by_batchsweep(root, label, script, n, jobs, flag="--warm"),
        "GNU parallel": lambda: by_parallel(root, script, n, jobs),
        "xargs -P": lambda: by_xargs(root, script, n, jobs),
        "joblib": lambda: by_joblib(root, script, n, jobs),
    }
    chosen = {name: fn for name, fn in runners.items() if not only or any(name.startswith(o) for o in only)}
    # Rounds interleave the runners, so a burst of load from elsewhere on the machine hits them all alike.
    seconds: dict[str, list[float]] = {name: [] for name in chosen}
    cpu: dict[str, list[float]] = {name: [] for name in chosen}
    for _ in range(rounds):
        for name, fn in chosen.items():
            wall, used = timed(fn)
            seconds[name].append(wall)
            cpu[name].append(used)
    alone = script_cpu(root, script)
    rates: dict[str, float] = {}
    for name, times in seconds.items():
        best = min(times)
        rates[name] = n / best
        spread = f" (best of {rounds}: {', '.join(f'{t:.1f}' for t in times)} s)" if rounds > 1 else ""
        # joblib's loky workers outlive the call, so the CPU of the tasks they ran is not counted here.
        per_task = "" if name == "joblib" else f", {min(cpu[name]) / n * 1000:6.1f} ms CPU/task"
        print(
            f"  {name:<18} {n:>6} tasks in {best:7.2f} s = {rates[name]:7.1f} tasks/s{per_task}{spread}",
            flush=True,
        )
    # What a runner adds to each task, in CPU (the wall times above also carry the machine's other load): a
    # cold runner cannot beat a peer by more than the peer's addition, however little it adds itself.
    cores = min(jobs, os.cpu_count() or 1)
    added = ", ".join(
        f"{name} {min(cpu[name]) / n * 1000 - alone * 1000:+.1f} ms" for name in cpu if name != "joblib"
    )
    print(
        f"  the script alone: {alone * 1000:.1f} ms CPU per run ({n} tasks need >= {n * alone / cores:.2f} s "
        f"on {cores} cores whatever runs them); CPU each runner adds per task: {added}"
    )
    for mine in ("batchsweep cold", "batchsweep default", "batchsweep warm"):
        if mine not in rates:
            continue
        ratios = ", ".join(
            f"{rates[mine] / rates[p]:.2f}x {p}" for p in rates if not p.startswith("batchsweep")
        )
        if ratios:
            print(f"  {mine}: {ratios}")
    peers = {p: r for p, r in rates.items() if not p.startswith("batchsweep")}
    for mine in ("batchsweep cold", "batchsweep default"):  # issue 21's target: >= 1.2x the fastest peer
        if mine in rates and peers:
            fastest = max(peers, key=peers.__getitem__)
            ratio = rates[mine] / peers[fastest]
            print(f"  1.2x line: {mine} is {ratio:.2f}x the fastest peer ({fastest}): "
                  f"{'meets' if ratio >= 1.2 else 'misses'} the 1.2x target")
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="trivial-script tasks (default 2000)")
    parser.add_argument(
        "--heavy-tasks", type=int, default=None, help="pandas/numpy tasks (default tasks / 10)"
    )
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="tasks at once (default: cores)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="time each runner this many times, interleaved; report the best (default 1)",
    )
    parser.add_argument("--only", action="append", default=[],
                        help="run only these runners (prefix: batchsweep, GNU, xargs, joblib); repeatable")
    args = parser.parse_args()
    heavy_n = args.heavy_tasks if args.heavy_tasks is not None else max(args.tasks // 10, 1)
    ensure_tools()
    with tempfile.TemporaryDirectory(prefix="batchsweep-bench-") as tmp:
        root = Path(tmp)
        trivial, heavy = root / "trivial.py", root / "heavy.py"
        trivial.write_text(TRIVIAL)
        heavy.write_text(HEAVY)
        print(f"{args.jobs} at once on {os.cpu_count()} cores, {PY}")
        print(f"trivial argparse script, {args.tasks} tasks:")
        bench(root, "trivial", trivial, args.tasks, args.jobs, set(args.only), args.rounds)
        if heavy_n:
            print(f"pandas + numpy script, {heavy_n} tasks:")
            bench(root, "heavy", heavy, heavy_n, args.jobs, set(args.only), args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
