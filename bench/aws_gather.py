"""Gathering the results of a big AWS Batch run: one summary object per child against two objects per task.

A run of N tasks is submitted to moto on 127.0.0.1 (one array job, `tasks_per_job` tasks per child); its store is
then filled as the played containers would fill it (every task's status.json and metrics.json, and each child's
summary in runs/<id>/packs/), written concurrently rather than by running N processes. `results` is timed and its
S3 requests counted on a fresh load of the run, first reading the summaries, then with them deleted (what it
read before summaries existed): in this process after a warm-up (imports and botocore's data loaded), and as a
user meets it, `batchsweep results RUN` in a new process (results.parquet removed first). Both tables must be equal.

    .venv/bin/python bench/aws_gather.py [--tasks 20000] [--per-child 50]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import CALLS, observe_every_call


def fill_store(run: Any, per_child: int) -> float:
    """What each child leaves in S3: its tasks' status.json + metrics.json, then its summary."""
    from batchsweep.model import State, TaskStatus
    from batchsweep.store import PackEntry
    from batchsweep.worker.remote import summary_name

    store, n = run.store, run.n_tasks
    t0 = time.perf_counter()
    now = time.time()

    def child(c: int) -> None:
        entries = []
        for i in range(c * per_child, min(n, (c + 1) * per_child)):
            failed = i % 97 == 13
            status = TaskStatus(index=i, state=State.FAILED if failed else State.SUCCEEDED, exit_code=1 if failed else 0,
                                error="exit code 1: ValueError: bad" if failed else None, started_at=now + i * 0.01,
                                ended_at=now + i * 0.01 + 0.5, worker=f"child-{c}", peak_rss_mib=42.0, cpu_s=0.4)
            metrics = None if failed else {"loss": 1.0 / (i + 1), "acc": (i % 100) / 100, "epoch": i % 10}
            if metrics is not None:
                store.write_json(store.task_key(run.id, i, "metrics.json"), metrics)
            store.write_status(run.id, status)
            entries.append(PackEntry(status, metrics))
        store.write_pack(run.id, summary_name(0, c, 1), entries)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(child, range((n + per_child - 1) // per_child)))
    return time.perf_counter() - t0


def gather(run_id: str, store: Path) -> tuple[float, Counter[str], Any]:
    import batchsweep

    CALLS.clear()
    t0 = time.perf_counter()
    df = batchsweep.load_run(run_id, store=store).results(refresh=True)
    return time.perf_counter() - t0, Counter(CALLS), df


def cli_results(run: Any, store: Path) -> float:
    """`batchsweep results RUN` in a new process, with the cached results.parquet removed first."""
    import subprocess

    run.store.backend.delete_prefix(run.store.run_key(run.id, "results.parquet"))
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "batchsweep"), "results", run.id, "--store", str(store),
                    "--format", "csv", "-o", os.devnull], check=True)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--per-child", type=int, default=50)
    args = parser.parse_args()

    import batchsweep
    from batchsweep.aws import clients
    from batchsweep.emulator import MotoServer, deploy_stack

    task = Path(__file__).parent / "trivial.py"
    with MotoServer() as server, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(server.env())
        deploy_stack(clients.make_session(region="us-east-1"))
        spec = Path(tmp) / "sweep.yaml"
        spec.write_text(f"name: gather\nscript: {task}\nparams: {{grid: {{i: {json.dumps(list(range(args.tasks)))}}}}}\n"
                        f"backend: aws-batch\naws: {{stack: batchsweep, tasks_per_job: {args.per_child}}}\n"
                        "resources: {vcpus: 1, memory_mib: 2048}\n")
        store = Path(tmp) / "store"
        run = batchsweep.run(spec, store=store, detach=True, progress=False)
        fill_s = fill_store(run, args.per_child)
        observe_every_call()
        gather(run.id, store)  # warm-up: pandas, botocore's endpoint data, the first connection
        new_cli = cli_results(run, store)
        new_s, new, new_df = gather(run.id, store)
        for name in run.store.pack_names(run.id):
            run.store.delete_pack(run.id, name)
        old_cli = cli_results(run, store)
        old_s, old, old_df = gather(run.id, store)
    import pandas as pd

    pd.testing.assert_frame_equal(new_df, old_df)
    children = (args.tasks + args.per_child - 1) // args.per_child
    s3 = {name: sum(v for k, v in c.items() if k.startswith("s3.")) for name, c in (("new", new), ("old", old))}
    gets = {name: c["s3.GetObject"] for name, c in (("new", new), ("old", old))}
    print(f"results of {args.tasks:,} tasks in {children:,} children ({args.per_child} per child), moto on 127.0.0.1; "
          f"store filled in {fill_s:.1f} s; tables equal")
    print(f"{'':26}{'summaries':>12}{'per-task files':>16}{'ratio':>9}")
    print(f"{'S3 requests':26}{s3['new']:>12,}{s3['old']:>16,}{s3['old'] / max(s3['new'], 1):>8.0f}x")
    print(f"{'  of which GetObject':26}{gets['new']:>12,}{gets['old']:>16,}{gets['old'] / max(gets['new'], 1):>8.0f}x")
    print(f"{'results, in process (s)':26}{new_s:>12.2f}{old_s:>16.2f}{old_s / new_s:>8.1f}x")
    print(f"{'batchsweep results (s)':26}{new_cli:>12.2f}{old_cli:>16.2f}{old_cli / new_cli:>8.1f}x")
    print(f"summaries: {dict(sorted(new.items()))}")
    print(f"per-task:  {dict(sorted(old.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
