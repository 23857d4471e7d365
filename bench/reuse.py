"""Reuse against running everything: a 1,000-task sweep widened to 1,200, side by side in one run, and the cost of
looking 100,000 task keys up in the store's index.

1. The 1,000-task grid runs once (the baseline, in store A and in store B).
2. The grid widened to 1,200 runs in store A with reuse (the default) and in store B with `reuse=False`.
   Executions are counted by the task itself (a line appended to a file outside the store), not by batchsweep.
3. Key lookup: 100,000 keys made for a 100,000-task grid, then looked up in an index of 100,000 entries (every
   one a hit; the status of each hit is read, as `run` does).

    python bench/reuse.py [--tasks 1000] [--extra 200] [--lookup 100000] [--max-parallel 0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import textwrap
import time
from pathlib import Path

SCRIPT = '''
import argparse, json, os
p = argparse.ArgumentParser()
p.add_argument("--i", type=int)
p.add_argument("--j", type=int)
a = p.parse_args()
with open(os.environ["EXECUTIONS"], "a") as f:
    f.write(f"{a.i},{a.j}\\n")
json.dump({"y": a.i * a.j}, open("metrics.json", "w"))
'''


def write_spec(root: Path, rows: int, log: Path) -> Path:
    (root / "task.py").write_text(SCRIPT)
    spec = root / "sweep.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: reuse-bench
        script: task.py
        params: {{grid: {{i: {list(range(rows))}, j: {list(range(100))}}}}}
        env: {{EXECUTIONS: "{log}"}}
        """))
    return spec


def executions(log: Path) -> int:
    n = len(log.read_text().splitlines()) if log.exists() else 0
    log.write_text("")
    return n


def timed_run(spec: Path, store: Path, *, reuse: bool, max_parallel: int) -> tuple[float, int]:
    import batchsweep

    t0 = time.perf_counter()
    run = batchsweep.run(spec, store=store, progress=False, reuse=reuse, max_parallel=max_parallel or None)
    wall = time.perf_counter() - t0
    assert run.exit_code == 0, run.id
    return wall, len(run.tasks())


def sweeps(args: argparse.Namespace, root: Path) -> None:
    log = root / "executions.log"
    code = root / "code"
    code.mkdir()
    base_rows, wide_rows = args.tasks // 100, (args.tasks + args.extra) // 100
    print(f"baseline: {base_rows * 100} tasks, once per store ...", flush=True)
    for store in ("A", "B"):
        timed_run(write_spec(code, base_rows, log), root / store, reuse=True, max_parallel=args.max_parallel)
    executions(log)
    spec = write_spec(code, wide_rows, log)
    rows = []
    for label, store, reuse in (("reuse (default)", "A", True), ("--no-reuse", "B", False)):
        wall, n = timed_run(spec, root / store, reuse=reuse, max_parallel=args.max_parallel)
        rows.append((label, n, executions(log), wall))
    print(f"\nwidened to {wide_rows * 100} tasks")
    print(f"{'':18}{'tasks':>8}{'executions':>12}{'wall s':>10}")
    for label, n, ran, wall in rows:
        print(f"{label:18}{n:>8}{ran:>12}{wall:>10.1f}")
    print(f"speed-up: {rows[1][3] / rows[0][3]:.1f}x wall time, {rows[1][2] - rows[0][2]} task executions saved")


def lookup(args: argparse.Namespace, root: Path) -> None:
    from batchsweep import keys, reuse, space
    from batchsweep import spec as spec_mod
    from batchsweep.model import State, TaskStatus
    from batchsweep.store import Store

    n = args.lookup
    code = root / "lookup"
    code.mkdir()
    (code / "task.py").write_text(SCRIPT)
    (code / "sweep.yaml").write_text(f"name: lookup\nscript: task.py\nparams: {{grid: {{i: {list(range(n // 100))}, "
                                     f"j: {list(range(100))}}}}}\n")
    spec = spec_mod.load(code / "sweep.yaml")
    t0 = time.perf_counter()
    cache = keys.HashCache()
    keyer = keys.Keyer(code=keys.code_hash(spec, cache=cache), what=keys.spec_what(spec),
                       env={"env": {}, **keys.local_environment()}, stamps=keys.InputStamps(spec.base_dir, cache))
    tasks = space.expand(spec, keyer=keyer)
    t_keys = time.perf_counter() - t0
    store = Store.open(root / "lookup-store")
    print(f"\nkey lookup: writing an index of {n:,} entries (and their statuses) ...", flush=True)
    status = TaskStatus(index=0, state=State.SUCCEEDED, started_at=0.0, ended_at=1.0)
    store.write_json(store.run_key("old-20260101-000000-abcd", "run.json"),
                     {"run_id": "old-20260101-000000-abcd", "spec": {"metrics": "metrics.json"}})
    for t in tasks:
        store.record_success(t.cache_key, "old-20260101-000000-abcd", t.index)
        store.local_path(store.task_key("old-20260101-000000-abcd", t.index)).mkdir(parents=True, exist_ok=True)
        with open(store.local_path(store.task_key("old-20260101-000000-abcd", t.index, "status.json")), "w") as f:
            f.write(status.to_json())
    t0 = time.perf_counter()
    entries = store.index_entries(t.cache_key for t in tasks)
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = reuse.lookup(store, tasks)
    t_lookup = time.perf_counter() - t0
    assert len(entries) == n and len(found.found) == n
    print(f"{n:,} content keys computed in {t_keys:.2f} s ({t_keys / n * 1e6:.0f} µs per task)")
    print(f"index listing for {n:,} keys: {t_index:.2f} s ({t_index / n * 1e6:.0f} µs per key, local store)")
    print(f"full lookup (index + each hit's status.json): {t_lookup:.2f} s ({t_lookup / n * 1e6:.0f} µs per task)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="the first sweep's size (a multiple of 100)")
    parser.add_argument("--extra", type=int, default=200, help="tasks the widened sweep adds (a multiple of 100)")
    parser.add_argument("--lookup", type=int, default=100_000, help="keys for the lookup measurement (0: skip)")
    parser.add_argument("--max-parallel", type=int, default=0, help="tasks at once (0: all cores)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-reuse-") as tmp:
        os.environ.setdefault("BATCHSWEEP_CACHE_DIR", str(Path(tmp) / "hash-cache"))
        root = Path(tmp)
        sweeps(args, root)
        if args.lookup:
            lookup(args, root)


if __name__ == "__main__":
    main()
