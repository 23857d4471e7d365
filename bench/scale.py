"""Scale: a 100,000-task sweep expands, writes its manifest and dry-runs in seconds, in little memory; it runs
for real in warm mode with a small runner, leaves a compact store and gathers in seconds; `batchsweep --help`
starts fast.

    .venv/bin/python bench/scale.py               # 100,000 tasks
    .venv/bin/python bench/scale.py --tasks 20000 [--no-real | --real-tasks 10000 | --real-only]
    .venv/bin/python bench/scale.py --fit 5000,10000,20000   # the runner's peak RSS per task, projected

Prints seconds and peak RSS (VmHWM) for: planning (load, expand, check the script's flags), writing the run's
manifest (tasks.jsonl, run.json) to a local store, and `batchsweep run SPEC --dry-run` as a user runs it. Then
(unless --no-real) `batchsweep run SPEC --warm --max-parallel CORES` of a trivial script that writes one
metric: wall time, tasks/s, the runner's peak RSS and CPU per task, the files and bytes left in the store (the
run compacts itself above 10,000 tasks; the reuse index is a few files) against the same run in the layout
before packs and index files, and `batchsweep results` / `status` times. Then `results` of a finished run of
the full size, its store written directly (a status.json and metrics.json per task, as the runner leaves
them): from the per-task files, then compacted (`runs compact`, timed) and from the pack, with the tables
compared. Then the median wall time of `batchsweep --help`.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
    from batchsweep.planning import plan as planning
    from batchsweep.store.core import Store

    t0 = time.perf_counter()
    p = planning.plan(spec)
    planned = time.perf_counter() - t0
    print(
        f"  plan (load, expand, check)   {len(p.tasks):>7} tasks {planned:6.2f} s  peak RSS "
        f"{peak_rss_mb():5.0f} MB"
    )
    t0 = time.perf_counter()
    Store.open(store).create_run(p.info["run_id"], p.info, p.tasks)
    written = time.perf_counter() - t0
    size = (store / "runs" / p.info["run_id"] / "tasks.jsonl").stat().st_size / 1e6
    print(f"  write manifest ({size:.1f} MB)     {written:6.2f} s  peak RSS {peak_rss_mb():5.0f} MB")


def dry_run(spec: Path) -> None:
    code = (
        "import resource, sys, time; t = time.perf_counter(); from batchsweep.cli import main; rc = "
        "main(sys.argv[1:]); sys.stdout.flush(); print(f'@@ {time.perf_counter() - t:.2f} "
        "{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}', file=sys.stderr); sys.exit(rc)"
    )
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, "run", str(spec), "--dry-run"], capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    seconds, mb = next(line for line in done.stderr.splitlines() if line.startswith("@@")).split()[1:]
    counted = next(
        (line.split()[0] for line in done.stdout.splitlines() if "tasks" in line and "dry run" in line), "?"
    )
    print(f"  batchsweep run --dry-run     {counted:>7} tasks {wall:6.2f} s  peak RSS {float(mb):5.0f} MB"
          f"  (in main: {seconds} s)")


QUIET = """\
import argparse, json

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=int)
parser.add_argument("--y", type=int)
parser.add_argument("--fee_bps", type=float)
args = parser.parse_args()
json.dump({"s": args.x + args.y}, open("metrics.json", "w"))
"""


def _timed_cli(*argv: str) -> tuple[float, float, str]:
    """`batchsweep ARGV` in a new process: wall seconds, its peak RSS (MB) and its stdout. The process's reads
    and listings of a local store are counted into LAST_OPS."""
    code = (
        "import resource, sys; from batchsweep.store.local import LocalBackend as B; ops = [0, 0]\n"
        "def counted(f, k):\n"
        "    def g(*a, **kw):\n"
        "        ops[k] += 1\n"
        "        return f(*a, **kw)\n"
        "    return g\n"
        "B.read_bytes, B.iter_bytes = counted(B.read_bytes, 0), counted(B.iter_bytes, 0)\n"
        "B.list_files, B.list_dirs = counted(B.list_files, 1), counted(B.list_dirs, 1)\n"
        "from batchsweep.cli import main; rc = main(sys.argv[1:]); sys.stdout.flush(); "
        "u = resource.getrusage(resource.RUSAGE_SELF); c = resource.getrusage(resource.RUSAGE_CHILDREN); "
        "print(f'@@ {u.ru_maxrss / 1024:.0f} {u.ru_utime + u.ru_stime:.1f} {c.ru_utime + c.ru_stime:.1f} '"
        "f'{ops[0]} {ops[1]}', file=sys.stderr); sys.exit(rc)"
    )
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode not in (0, 1):
        raise RuntimeError(done.stderr)
    figures = next(line for line in done.stderr.splitlines() if line.startswith("@@")).split()[1:]
    LAST_CPU[:] = [float(figures[1]), float(figures[2])]
    LAST_OPS[:] = [int(figures[3]), int(figures[4])]
    return wall, float(figures[0]), done.stdout


LAST_CPU = [0.0, 0.0]  # CPU seconds of the last `_timed_cli` process and of the children it waited for
LAST_OPS = [0, 0]  # reads (whole or streamed) and listings of the store by the last `_timed_cli` process


def _tree(root: Path) -> tuple[int, int, int]:
    files = dirs = size = 0
    for _, dirnames, names in os.walk(root):
        dirs += len(dirnames)
        for name in names:
            files += 1
            size += os.path.getsize(os.path.join(_, name))
    return files, dirs, size


def real_run(root: Path, n: int) -> float:
    """The sweep run for real, warm; the runner's own peak RSS (the tasks are other processes), returned in
    MB."""
    (root / "task.py").write_text(QUIET)
    store = root / "real-store"
    cores = os.cpu_count() or 1
    argv = [
        "run",
        str(root / "sweep.yaml"),
        "--warm",
        "--max-parallel",
        str(cores),
        "--store",
        str(store),
        "--no-reuse",
    ]
    print(f"  batchsweep {' '.join(argv)}", flush=True)
    wall, mb, _ = _timed_cli(*argv)
    runner_mb = mb
    run_dir = next((store / "runs").iterdir())
    runner_cpu, children_cpu = LAST_CPU
    print(
        f"  run --warm (real)            {n:>7} tasks {wall:6.1f} s  {n / wall:6.0f} tasks/s  runner peak "
        f"RSS {mb:5.0f} MB"
    )
    print(
        f"  CPU per task                 runner {runner_cpu / n * 1e3:.1f} ms, warm server + tasks "
        f"{children_cpu / n * 1e3:.1f} ms  (load average {os.getloadavg()[0]:.1f} at the end, {cores} cores)"
    )
    files, dirs, size = _tree(store)
    index_files = (
        len([p for p in (store / "index").iterdir() if p.is_file()]) if (store / "index").exists() else 0
    )
    print(f"  store left                   {files:>7} files {dirs:>7} dirs {size / 1e6:6.1f} MB "
          f"(of which {index_files} reuse index files)")
    before_files, before_dirs, before_bytes = _before(store, run_dir, n)
    print(
        f"  the same run, layout before  {before_files:>7} files {before_dirs:>7} dirs "
        f"{before_bytes / 1e6:6.1f} MB (a status.json and metrics.json per task, an empty index file per "
        f"task in a directory per key) -> {before_files / files:.0f}x fewer files, "
        f"{before_dirs / max(dirs, 1):.0f}x fewer directories"
    )
    print(
        f"  as the issue counted it      {before_files + 2 * n:>7} files (+ an empty stdout.log and "
        f"stderr.log per task) -> {(before_files + 2 * n) / files:.0f}x fewer files"
    )
    wall, mb, out = _timed_cli("results", "--store", str(store), "--format", "csv", "-o", os.devnull)
    print(f"  batchsweep results           {n:>7} rows  {wall:6.2f} s  peak RSS {mb:5.0f} MB")
    wall, mb, out = _timed_cli("status", "--store", str(store))
    counts = next((line.strip() for line in out.splitlines() if line.startswith("tasks")), "?")
    print(f"  batchsweep status                        {wall:6.2f} s  peak RSS {mb:5.0f} MB  ({counts})")
    return runner_mb


def fit(sizes: list[int]) -> None:
    """The real run at each size, then the runner's peak RSS fitted as a line in the task count (least
    squares): what each task adds, and the projection at 100,000 tasks, without waiting for a 100,000-task
    run."""
    peaks = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="batchsweep-scale-") as tmp:
            print(f"{n} tasks on {os.cpu_count()} cores:", flush=True)
            write_spec(Path(tmp), n)
            peaks.append(real_run(Path(tmp), n))
    mean_n, mean_mb = statistics.fmean(sizes), statistics.fmean(peaks)
    slope = sum((n - mean_n) * (mb - mean_mb) for n, mb in zip(sizes, peaks)) / sum(
        (n - mean_n) ** 2 for n in sizes
    )
    base = mean_mb - slope * mean_n
    print("  runner peak RSS by tasks      " + ", ".join(f"{n}: {mb:.0f} MB" for n, mb in zip(sizes, peaks)))
    print(f"  fitted                        {base:.0f} MB + {slope * 1e3:.2f} KB per task "
          f"-> {base + slope * 100_000:.0f} MB at 100,000 tasks")


def _before(store: Path, run_dir: Path, n: int) -> tuple[int, int, int]:
    """Files, directories and bytes the run would have left in the layout before packs and index files (a
    status.json and, when the task wrote metrics, a metrics.json in a directory per task; an empty index file
    per succeeded task in a directory per content key, under one per key prefix), everything else as it is
    now."""
    import json

    files, dirs, size = _tree(store)
    packs = list((run_dir / "packs").glob("*.jsonl")) if (run_dir / "packs").exists() else []
    task_files = task_bytes = 0
    for pack in packs:
        files -= 1
        size -= pack.stat().st_size
        for line in pack.read_text().splitlines():
            entry = json.loads(line)
            task_files += 1 + (entry["m"] is not None)
            task_bytes += len(json.dumps(entry["s"])) + (len(json.dumps(entry["m"])) if entry["m"] else 0)
    if not packs:  # not compacted: the task files are there already
        task_files = task_bytes = 0
    index = store / "index"
    index_files = [p for p in index.iterdir() if p.is_file()] if index.exists() else []
    entries = sum(len(p.read_bytes().splitlines()) for p in index_files)
    prefixes = len({p.stem for p in index_files})
    files += task_files - len(index_files) + entries
    size += task_bytes - sum(p.stat().st_size for p in index_files)
    dirs += (n if packs else 0) + entries + prefixes  # a directory per task; per key (one entry each here)
    return files, dirs, size


def write_finished_run(
    root: Path, n: int, *, packed: bool = False, series_every: int = 0
) -> tuple[Path, str]:
    """A finished n-task local run of the QUIET script written straight into a new store, as the runner leaves
    it: a status.json and metrics.json per task (each file fsync'ed, as the runner writes it), or with
    `packed` the one pack `runs compact` (run by itself past 1,000 tasks) leaves instead. Every
    `series_every`-th task also has a series of 10 steps (metrics.jsonl, which compaction keeps), its status
    saying its last step. Returns the store's directory and the run's id."""
    from batchsweep.model import State, TaskStatus
    from batchsweep.planning import plan as planning
    from batchsweep.store.core import PackEntry, Store

    (root / "task.py").write_text(QUIET)
    p = planning.plan(root / "sweep.yaml")
    store_dir = root / ("pack-store" if packed else "gather-store")
    store = Store.open(store_dir)
    run_id = p.info["run_id"]
    store.create_run(run_id, {**p.info, "base_dir": str(root)}, p.tasks)

    def entry(task: Any) -> PackEntry:
        i = task.index
        series = bool(series_every) and i % series_every == 0
        if series:
            path = store.local_path(store.task_series_key(run_id, i))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(f'{{"step": {s}, "loss": {1 / (s + 1 + i)}}}\n' for s in range(10)))
        status = TaskStatus(index=i, state=State.SUCCEEDED, started_at=1e9 + i, ended_at=1e9 + i + 0.2,
                            worker="local-0", exit_code=0, last_step=9 if series else None)
        return PackEntry(status, {"s": task.params["x"] + task.params["y"]})

    def one(task: Any) -> None:
        e = entry(task)
        store.write_json(store.task_metrics_key(run_id, task.index), e.metrics)
        store.write_status(run_id, e.status)

    if packed:
        store.write_pack(run_id, f"compact~{time.time_ns()}", map(entry, p.tasks))
    else:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(one, p.tasks))
        store.flush_writes()
    store.write_json(store.engine_record_key(run_id), {"pid": 0})
    return store_dir, run_id


def gather_compare(root: Path, n: int) -> None:
    """`results` of a finished n-task run from per-task files against the same run compacted."""
    import pandas as pd

    t0 = time.perf_counter()
    store_dir, run_id = write_finished_run(root, n)
    written = time.perf_counter() - t0
    files = _tree(store_dir)[0]
    print(f"  finished run written         {n:>7} tasks {written:6.1f} s  {files} files")
    wall_files, mb_files, _ = _timed_cli(
        "results", run_id, "--store", str(store_dir), "--format", "csv", "-o", str(root / "files.csv")
    )
    (store_dir / "runs" / run_id / "results.parquet").unlink(missing_ok=True)
    wall_compact, _, out = _timed_cli("runs", "compact", run_id, "--store", str(store_dir))
    files_after = _tree(store_dir)[0]
    wall_pack, mb_pack, _ = _timed_cli("results", run_id, "--store", str(store_dir), "--format", "csv", "-o",
                                       str(root / "pack.csv"))
    same = pd.read_csv(root / "files.csv").equals(pd.read_csv(root / "pack.csv"))
    print(
        f"  runs compact                               {wall_compact:6.2f} s  {files} -> {files_after} files "
        f"({files / files_after:.0f}x fewer)"
    )
    print(f"  batchsweep results, files    {n:>7} rows  {wall_files:6.2f} s  peak RSS {mb_files:5.0f} MB")
    print(f"  batchsweep results, packed   {n:>7} rows  {wall_pack:6.2f} s  peak RSS {mb_pack:5.0f} MB  "
          f"({wall_files / wall_pack:.1f}x; tables {'equal' if same else 'DIFFER'})")


def big_reads(root: Path, n: int) -> None:
    """`results` (CSV and the table), `status` and `report` of a finished n-task local run (compacted, as a
    run of more than 1,000 tasks leaves itself; every 100th task with a series), each in a new process: wall,
    peak RSS, and the store's reads and listings; beside them the peers: pandas.read_csv of the same table,
    `wc -l` of the pack."""
    t0 = time.perf_counter()
    store_dir, run_id = write_finished_run(root, n, packed=True, series_every=100)
    files = _tree(store_dir)[0]
    print(f"  finished run written, packed {n:>7} tasks {time.perf_counter() - t0:6.1f} s  {files} files "
          f"({n // 100} series)")
    store = ["--store", str(store_dir)]
    csv, html = root / "results.csv", root / "report.html"
    rows = []
    for name, argv in (
        ("results --format csv -o FILE", ["results", run_id, *store, "--format", "csv", "-o", str(csv)]),
        ("results (the table)", ["results", run_id, *store]),
        ("status", ["status", run_id, *store]),
        ("report -o FILE", ["report", run_id, *store, "-o", str(html)]),
    ):
        # each from the store itself
        (store_dir / "runs" / run_id / "results.parquet").unlink(missing_ok=True)
        wall, mb, _ = _timed_cli(*argv)
        rows.append(
            (f"batchsweep {name}", wall, LAST_CPU[0], mb, f"{LAST_OPS[0]} reads, {LAST_OPS[1]} listings")
        )
    code = ("import resource, sys; import pandas; df = pandas.read_csv(sys.argv[1]); "
            "u = resource.getrusage(resource.RUSAGE_SELF); "
            "print(f'@@ {u.ru_utime + u.ru_stime:.2f} {u.ru_maxrss / 1024:.0f} {len(df)}', file=sys.stderr)")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, str(csv)], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    cpu, mb, read = next(line for line in done.stderr.splitlines() if line.startswith("@@")).split()[1:]
    rows.append(("peer: pandas.read_csv(results.csv)", wall, float(cpu), float(mb), f"{int(read):,} rows"))
    packs = sorted(str(p) for p in (store_dir / "runs" / run_id / "packs").glob("*.jsonl"))
    t0 = time.perf_counter()
    out = subprocess.run(["wc", "-l", *packs], capture_output=True, text=True, check=True).stdout
    rows.append(("peer: wc -l of the pack", time.perf_counter() - t0, float("nan"), float("nan"),
                 out.split()[0] + " lines"))
    print(f"  {'':<38} {'wall':>6}    {'CPU':>6}    peak RSS")
    for what, wall, cpu, mb, note in rows:
        print(f"  {what:<38} {wall:6.2f} s  {cpu:6.2f} s  {mb:5.0f} MB  {note}")
    base = rows[3]
    print(f"  results / read_csv: {rows[0][1] / base[1]:.1f}x the wall, {rows[0][2] / base[2]:.1f}x the CPU, "
          f"{rows[0][3] / base[3]:.1f}x the memory (load average {os.getloadavg()[0]:.1f} at the end)")


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
    parser.add_argument("--no-real", action="store_true", help="skip the real run")
    parser.add_argument(
        "--real-tasks", type=int, default=None, help="tasks of the real run (default --tasks)"
    )
    parser.add_argument(
        "--real-only", action="store_true", help="only the real run (no dry run, gather, --help)"
    )
    parser.add_argument(
        "--reads",
        action="store_true",
        help="only `results`, `status` and `report` of a finished "
        "run of --tasks tasks, beside pandas.read_csv of the same table",
    )
    parser.add_argument(
        "--fit",
        metavar="N,N,...",
        help="only real runs of these sizes (e.g. 5000,10000,20000), "
        "then the runner's peak RSS per task fitted and projected to 100,000 tasks",
    )
    args = parser.parse_args()
    if args.fit:
        fit([int(n) for n in args.fit.split(",")])
        return 0
    with tempfile.TemporaryDirectory(prefix="batchsweep-scale-") as tmp:
        root = Path(tmp)
        spec = write_spec(root, args.tasks)
        print(f"{args.tasks} tasks on {os.cpu_count()} cores:")
        if args.reads:
            big_reads(root, args.tasks)
            return 0
        if not args.real_only:
            dry_run(spec)
            in_process(spec, root / "store")
            gather_compare(root, args.tasks)
        if not args.no_real:
            real = args.real_tasks or args.tasks
            if real != args.tasks:
                write_spec(root, real)
            real_run(root, real)
    if not args.real_only:
        help_time()
    return 0


if __name__ == "__main__":
    sys.exit(main())
