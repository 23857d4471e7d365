"""Per-task overhead of the Dask engine against the local engine: the same trivial tasks, the same parallelism.

    .venv/bin/python bench/dask_overhead.py [--tasks 500] [--workers 2]

The task script does nothing, so a task's whole time is overhead: starting Python, the worker's bookkeeping,
the store writes, and for Dask the scheduler round trips. Overhead per task = wall time x slots / tasks.
Three rows: the local engine (max_parallel = workers); Dask on an already running cluster (`dask.scheduler`,
workers x 1 thread, started before the clock); Dask with `cluster: local` (its start and stop included).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import batchsweep

NOOP = 'import argparse\nargparse.ArgumentParser().add_argument("--i", type=int)\n'


def write_spec(directory: Path, tasks: int, *, dask: dict[str, object] | None) -> Path:
    (directory / "noop.py").write_text(NOOP)
    spec = {"name": "overhead", "script": "noop.py", "params": {"grid": {"i": list(range(tasks))}}}
    if dask is not None:
        spec.update(backend="dask", dask=dask)
    path = directory / f"sweep-{len(list(directory.glob('sweep-*')))}.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def timed(spec: Path, store: Path, workers: int) -> float:
    t0 = time.perf_counter()
    run = batchsweep.run(spec, store=store, progress=False, max_parallel=workers)
    wall = time.perf_counter() - t0
    counts, _ = run.counts()
    if counts.get("succeeded") != run.n_tasks:
        raise SystemExit(f"{spec.name}: not every task succeeded: {dict(counts)}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from distributed import LocalCluster

    n, w = args.tasks, args.workers
    with tempfile.TemporaryDirectory(prefix="dask-overhead-") as tmp:
        d = Path(tmp)
        rows = [("local engine", timed(write_spec(d, n, dask=None), d / "store", w))]
        with LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=":0",
                          silence_logs=logging.ERROR) as cluster:
            spec = write_spec(d, n, dask={"scheduler": cluster.scheduler_address})
            rows.append(("dask, running cluster", timed(spec, d / "store", w)))
        rows.append(("dask, cluster: local", timed(write_spec(d, n, dask={"cluster": "local"}), d / "store", w)))

    base = rows[0][1] * w / n
    print(f"{n} trivial tasks, {w} workers/processes")
    print(f"{'engine':<24}{'wall s':>9}{'per task ms':>14}{'ratio':>8}")
    for name, wall in rows:
        per_task = wall * w / n
        print(f"{name:<24}{wall:>9.2f}{per_task * 1000:>14.1f}{per_task / base:>8.2f}")


if __name__ == "__main__":
    main()
