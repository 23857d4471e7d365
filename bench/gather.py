"""Gather: 10,000 finished tasks into one table and one Parquet file, batchsweep against pandas one by one.

    .venv/bin/python bench/gather.py              # 10,000 tasks
    .venv/bin/python bench/gather.py --tasks 1000

A synthetic store holds a finished local run: per task `status.json` and a `metrics.json` of 6 metrics.
batchsweep: `results.gather(run, refresh=True)` (a row per task with params, status and metrics, written to
results.parquet). Pandas: `pd.read_json` of each metrics file, `pd.concat`, `to_parquet`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from batchsweep.model import State, Task, TaskStatus
from batchsweep.runs.run import Run
from batchsweep.store.core import Store


def make_store(root: Path, n: int) -> Run:
    store = Store.open(root / "store")
    run_id = "gather-20240101-000000-abcd"
    rng = random.Random(0)
    tasks = [Task(index=i, params={"symbol": f"S{i % 50}", "window": i // 50}) for i in range(n)]
    info = {
        "run_id": run_id,
        "name": "gather",
        "backend": "local",
        "n_tasks": n,
        "param_names": ["symbol", "window"],
        "created": "2024-01-01T00:00:00+00:00",
        "created_ts": 1704067200.0,
        "base_dir": str(root),
        "spec": {"name": "gather"},
    }
    store.create_run(run_id, info, tasks)
    for t in tasks:
        metrics = {
            "sharpe": rng.gauss(0, 1),
            "total_return": rng.gauss(0, 0.2),
            "max_drawdown": -rng.random(),
            "n_trades": rng.randrange(500),
            "exposure": rng.random(),
            "win_rate": rng.random(),
        }
        task_dir = store.local_path(store.task_key(run_id, t.index))
        task_dir.mkdir(parents=True)
        (task_dir / "metrics.json").write_text(json.dumps(metrics))
        (task_dir / "stdout.log").write_text("")
        (task_dir / "stderr.log").write_text("")
        store.write_status(
            run_id,
            TaskStatus(
                index=t.index,
                state=State.SUCCEEDED,
                exit_code=0,
                started_at=1.0,
                ended_at=2.5,
                worker="local-0",
            ),
        )
    return Run(store, run_id)


def by_batchsweep(run: Run) -> int:
    from batchsweep.report.results import gather

    return len(gather(run, refresh=True))


def by_pandas(run: Run, out: Path) -> int:
    import pandas as pd

    frames = []
    for i in range(run.n_tasks):
        path = run.store.local_path(run.store.task_key(run.id, i, "metrics.json"))
        frames.append(pd.read_json(path, typ="series").to_frame().T.assign(task=i))
    df = pd.concat(frames, ignore_index=True)
    df.to_parquet(out, index=False)
    return len(df)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    args = parser.parse_args()
    import pandas  # noqa: F401 - both sides use it; keep its import out of the timings

    with tempfile.TemporaryDirectory(prefix="batchsweep-gather-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        run = make_store(root, args.tasks)
        print(f"synthetic store of {args.tasks} finished tasks in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        rows = by_pandas(run, root / "pandas.parquet")
        slow = time.perf_counter() - t0
        print(f"  pandas read_json + concat   {rows:>6} rows in {slow:6.2f} s")
        t0 = time.perf_counter()
        rows = by_batchsweep(run)
        fast = time.perf_counter() - t0
        print(f"  batchsweep results.gather   {rows:>6} rows in {fast:6.2f} s")
        print(f"  batchsweep is {slow / fast:.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
