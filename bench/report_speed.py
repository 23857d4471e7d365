"""`batchsweep report` of a small finished run, as a user meets it in a new process, with this checkout's code and
with an earlier commit's (`--before`, default: the commit before importance.py last changed), side by side.

One run is made once (a grid of lr x width of a script that writes metrics.json; `--random` draws both params
instead, as a search would) and both versions report it, alternating, `--rounds` times each after one warm-up each
(which writes their bytecode, as a user's second report finds it). Printed per version: best and median wall time
and CPU time (user + sys of the process), and whether scikit-learn was imported.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = '''\
import argparse, json, math
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.01)
p.add_argument("--width", type=int, default=32)
a = p.parse_args()
loss = (math.log10(a.lr) + 2.5) ** 2 + 8 / a.width
json.dump({"val_loss": loss, "acc": 1 / (1 + loss)}, open("metrics.json", "w"))
'''

# Run in the reporting process: reports, then says whether scikit-learn was imported and where batchsweep came from.
REPORT = '''\
import sys
from batchsweep import cli
code = cli.main(["report", "--store", sys.argv[1], "-o", sys.argv[2]])
print("sklearn" in sys.modules, cli.__file__, file=sys.stderr)
sys.exit(code)
'''


def before_commit() -> str:
    last = subprocess.run(["git", "log", "-n1", "--format=%H", "--", "src/batchsweep/report/importance.py"],
                          cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    return f"{last}~1"


def checkout(rev: str, target: Path) -> Path:
    """The `src/` of commit `rev`, unpacked under target (the venv's editable install is shadowed by PYTHONPATH)."""
    target.mkdir(parents=True, exist_ok=True)
    archive = target / "src.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target / "src"


def make_run(work: Path, tasks: int, random: bool) -> Path:
    (work / "train.py").write_text(SCRIPT)
    widths = [8, 16, 32, 64]
    if random:
        space = f"{{lr: 'loguniform(0.0001, 1.0)', width: 'choice({', '.join(map(str, widths))})'}}"
        params = f"random: {{samples: {tasks}, seed: 1, space: {space}}}"
    else:
        lrs = [10 ** (-4 + 4 * i / max(1, tasks // 4 - 1)) for i in range(max(1, tasks // 4))]
        params = f"grid: {{lr: {[round(v, 6) for v in lrs]}, width: {widths}}}"
    (work / "sweep.yaml").write_text(f"name: reportbench\nscript: train.py\nparams: {{{params}}}\n")
    store = work / "store"
    subprocess.run([sys.executable, "-m", "batchsweep", "run", str(work / "sweep.yaml"), "--store", str(store)],
                   cwd=work, check=True, capture_output=True)
    return store


def report_once(src: Path | None, store: Path, out: Path) -> tuple[float, float, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # bytecode kept, as for a user
    if src is not None:
        env["PYTHONPATH"] = str(src)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", REPORT, str(store), str(out)], env=env, capture_output=True,
                          text=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", default=None, help="the earlier commit (default: before importance.py changed)")
    parser.add_argument("--random", action="store_true", help="random params instead of a grid")
    args = parser.parse_args()
    rev = args.before or before_commit()
    with tempfile.TemporaryDirectory(prefix="report-bench-") as tmp:
        work = Path(tmp)
        old_src = checkout(rev, work / "before")
        store = make_run(work, args.tasks, args.random)
        versions = {"this checkout": None, f"before ({rev})": old_src}
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in versions}
        seen: dict[str, str] = {}
        for src in versions.values():
            report_once(src, store, work / "warm.html")
        for _ in range(args.rounds):
            for name, src in versions.items():
                wall, cpu, seen[name] = report_once(src, store, work / "r.html")
                figures[name].append((wall, cpu))
        load = os.getloadavg()[0]
        print(f"report of a {args.tasks}-task {'random' if args.random else 'grid'} run, {args.rounds} rounds, "
              f"load average {load:.1f} on {os.cpu_count()} cores")
        for name, runs in figures.items():
            walls, cpus = [w for w, _ in runs], [c for _, c in runs]
            sklearn, where = seen[name].split(" ", 1)
            print(f"  {name:<52} wall best {min(walls):.2f} s, median {statistics.median(walls):.2f} s · "
                  f"CPU best {min(cpus):.2f} s, median {statistics.median(cpus):.2f} s · "
                  f"scikit-learn imported: {sklearn == 'True'} ({where})")


if __name__ == "__main__":
    main()
