"""Reuse against running everything: a 1,000-task sweep widened to 1,200, side by side in one run, and the
cost of looking 100,000 task keys up in the store's index.

1. The 1,000-task grid runs once (the baseline, in store A and in store B).
2. The grid widened to 1,200 runs in store A with reuse (the default) and in store B with `reuse=False`.
   Executions are counted by the task itself (a line appended to a file outside the store), not by batchsweep.
3. Key lookup, measured for real: an index of 100,000 keys (100 earlier runs of 1,000 succeeded tasks, laid
   out as the worker leaves them), then two sweeps looked up against it -- the widened one (1,000 hits, 200
   new) and the whole 100,200-task grid -- with the index (`reuse.lookup`, what `run` does: the index files,
   then each hit's status.json) and with the naive scan an index spares (every earlier run's tasks.jsonl, then
   the matching tasks' status.json), side by side, with the ratio. Both must find the same sources.

    python bench/reuse.py [--tasks 1000] [--extra 200] [--lookup 100000] [--max-parallel 0] [--repeat 3]
    (--tasks 0 skips the sweeps, --lookup 0 the lookup)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

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
    print(
        f"speed-up: {rows[1][3] / rows[0][3]:.1f}x wall time, {rows[1][2] - rows[0][2]} task executions saved"
    )


def naive_lookup(store: Any, tasks: list[Any]) -> dict[int, tuple[str, int]]:
    """What `run` would do without the index: read every earlier run's tasks.jsonl, then the status.json of
    each task whose key the sweep wants (only those: the cheapest scan there is), newest run first."""
    from batchsweep.model import State

    wanted = {t.cache_key for t in tasks}
    found: dict[str, tuple[str, int]] = {}
    for run_id in sorted(store.run_ids(), reverse=True):
        hits = [t for t in store.tasks(run_id) if t.cache_key in wanted and t.cache_key not in found]
        statuses = store.read_task_statuses([(run_id, t.index) for t in hits])
        for t, status in zip(hits, statuses):
            if status is not None and status.state is State.SUCCEEDED:
                found[t.cache_key] = (run_id, t.index)
    return {t.index: found[t.cache_key] for t in tasks if t.cache_key in found}


def populate(store: Any, tasks: list[Any], per_run: int) -> int:
    """`tasks` as earlier succeeded runs of `per_run` tasks each, laid out as the worker leaves them:
    tasks.jsonl, run.json, each task's status.json (written without fsync: this is setup, not measured) and
    its index entry."""
    from batchsweep.model import State, TaskStatus

    root = store.local_path("")
    runs = 0
    for start in range(0, len(tasks), per_run):
        run_id = f"old-20260101-{start // per_run:06d}-abcd"
        chunk = [replace(t, index=i) for i, t in enumerate(tasks[start:start + per_run])]
        store.create_run(
            run_id, {"run_id": run_id, "name": "lookup", "spec": {"metrics": "metrics.json"}}, chunk
        )
        for t in chunk:
            task_dir = root / "runs" / run_id / "tasks" / str(t.index)
            task_dir.mkdir(parents=True)
            (task_dir / "status.json").write_text(
                TaskStatus(index=t.index, state=State.SUCCEEDED, started_at=0.0, ended_at=1.0).to_json())
        store.record_successes([(t.cache_key, run_id, t.index) for t in chunk])
        runs += 1
    return runs


def side_by_side(repeat: int, index: Any, naive: Any) -> tuple[float, float, Any, Any]:
    """Best time of each of two lookups over `repeat` rounds, alternating which goes first (the page cache
    then favours neither)."""
    times: dict[str, list[float]] = {"index": [], "naive": []}
    out: dict[str, Any] = {}
    for r in range(repeat):
        for name, fn in (
            (("index", index), ("naive", naive)) if r % 2 == 0 else (("naive", naive), ("index", index))
        ):
            t0 = time.perf_counter()
            out[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return min(times["index"]), min(times["naive"]), out["index"], out["naive"]


def lookup(args: argparse.Namespace, root: Path) -> None:
    """A real index of `args.lookup` keys (earlier runs of 1,000 tasks each), and sweeps looked up against it
    with the index (`reuse.lookup`, what `run` does) and with the naive scan of every earlier run, side by
    side."""
    from batchsweep.planning import keys, reuse, space
    from batchsweep.spec import reader as spec_mod
    from batchsweep.store.core import Store

    n, extra = args.lookup, args.extra or 200
    code = root / "lookup"
    code.mkdir()
    (code / "task.py").write_text(SCRIPT)
    (code / "sweep.yaml").write_text(f"name: lookup\nscript: task.py\nparams: {{grid: {{i: "
                                     f"{list(range((n + extra) // 100))}, j: {list(range(100))}}}}}\n")
    spec = spec_mod.load(code / "sweep.yaml")
    t0 = time.perf_counter()
    cache = keys.HashCache()
    keyer = keys.Keyer(
        code=keys.code_hash(spec, cache=cache),
        what=keys.spec_what(spec),
        env={"env": {}, **keys.local_environment()},
        stamps=keys.InputStamps(spec.base_dir, cache),
    )
    grid = space.expand(spec, keyer=keyer)
    t_keys = time.perf_counter() - t0
    indexed, new = grid[:n], grid[n:]
    store = Store.open(root / "lookup-store")
    print(
        f"\nkey lookup: writing {n:,} earlier succeeded tasks (runs of 1,000, each task's status.json and "
        "index entry) ...",
        flush=True,
    )
    t0 = time.perf_counter()
    runs = populate(store, indexed, 1000)
    index_files = list((root / "lookup-store" / "index").iterdir())
    entries = sum(len(f.read_bytes().splitlines()) for f in index_files)
    assert entries == n, entries
    print(f"  {runs} runs, {entries:,} index entries in {len(index_files)} index files, written in "
          f"{time.perf_counter() - t0:.0f} s")
    print(
        f"{len(grid):,} content keys computed in {t_keys:.2f} s ({t_keys / len(grid) * 1e6:.0f} µs per task)"
    )
    # The sweeps looked up: the widened one (1,000 tasks of the index plus `extra` new ones), one ten times
    # bigger, and the whole grid (every key in the index).
    sizes = sorted({min(1000, n), min(10_000, n), n})
    sweeps = [(f"{k + len(new):,} tasks ({k:,} hits)", indexed[:k] + new) for k in sizes]
    print(
        f"\nlookup against an index of {n:,} keys ({runs} earlier runs), local store, best of {args.repeat}:"
    )
    print(f"{'sweep':28}{'index s':>10}{'naive scan s':>14}{'index µs/task':>15}{'naive / index':>15}")
    for label, tasks in sweeps:
        t_index, t_naive, found, naive = side_by_side(
            args.repeat if len(tasks) < 20_000 else 2, lambda tasks=tasks: reuse.lookup(store, tasks),
            lambda tasks=tasks: naive_lookup(store, tasks))
        assert {i: (s.run_id, s.index) for i, s in found.found.items()} == naive, "the two lookups disagree"
        assert len(naive) == len(tasks) - len(new)
        print(f"{label:28}{t_index:>10.2f}{t_naive:>14.2f}{t_index / len(tasks) * 1e6:>15.0f}"
              f"{t_naive / t_index:>14.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000, help="the first sweep's size (a multiple of 100)")
    parser.add_argument(
        "--extra", type=int, default=200, help="tasks the widened sweep adds (a multiple of 100)"
    )
    parser.add_argument(
        "--lookup", type=int, default=100_000, help="keys for the lookup measurement (0: skip)"
    )
    parser.add_argument("--max-parallel", type=int, default=0, help="tasks at once (0: all cores)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of each lookup, the best kept (2 above 20,000)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-reuse-") as tmp:
        os.environ.setdefault("BATCHSWEEP_CACHE_DIR", str(Path(tmp) / "hash-cache"))
        root = Path(tmp)
        if args.tasks:
            sweeps(args, root)
        if args.lookup:
            lookup(args, root)


if __name__ == "__main__":
    main()
