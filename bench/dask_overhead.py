"""Per-task overhead of the Dask engine against the local engine and a plain `client.map`, in one run.

    .venv/bin/python bench/dask_overhead.py [--tasks 200] [--trials 60] [--workers 2] [--rounds 1]
                                            [--only sweep|search]

Two workloads, on the same cores:
- sweep: `--tasks` tasks of a script that does nothing, so a task's whole time is overhead (starting Python,
  the worker's bookkeeping, the store writes, for Dask the scheduler round trips);
- search: a `--trials` TPE search in rounds of `--workers` trials of a script that writes one metric, so the
  time is the tasks' start-up, asking and telling Optuna, and for the engines each round's submit and wait.

Rows: the local engine (max_parallel = workers; every row runs every task: `reuse=False`); the Dask engine on
a running LocalCluster (workers x 1 thread, processes, started before the clock), by default and with
`warm: false`; on that same cluster, `client.map` of a plain `subprocess.run` of the script per task (the
search: an Optuna study asked and told round by round around it,
`batchsweep.planning.optuna_rounds.optimize`), and `client.map` of the script's work as a function (no process
per task: Dask's own floor); last, the Dask engine with `cluster: local` (its own cluster's start and stop
included). Overhead per task = wall time x workers / tasks; the ratios are each row's to the local engine's
and to `client.map` of the script.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import batchsweep

NOOP = 'import argparse\nargparse.ArgumentParser().add_argument("--i", type=int)\n'
BRANIN = '''\
import argparse, json, math
p = argparse.ArgumentParser()
p.add_argument("--x1", type=float)
p.add_argument("--x2", type=float)
p.add_argument("--trial", type=int)
p.add_argument("--round", type=int)
a = p.parse_args()
b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
v = (a.x2 - b * a.x1**2 + c * a.x1 - 6) ** 2 + 10 * (1 - t) * math.cos(a.x1) + 10
json.dump({"value": v}, open("metrics.json", "w"))
'''
SPACE = {"x1": "uniform(-5, 10)", "x2": "uniform(0, 15)"}


def write_spec(directory: Path, workload: str, n: int, workers: int, *,
               dask: dict[str, object] | None) -> Path:
    (directory / "noop.py").write_text(NOOP)
    (directory / "branin.py").write_text(BRANIN)
    spec: dict[str, object]
    if workload == "sweep":
        spec = {"name": "overhead", "script": "noop.py", "params": {"grid": {"i": list(range(n))}}}
    else:
        spec = {"name": "search-overhead", "script": "branin.py", "params": {"fixed": {}},
                "search": {"sampler": "tpe", "trials": n, "batch": workers, "metric": "value",
                           "space": SPACE}}
    if dask is not None:
        spec.update(backend="dask", dask=dask)
    path = directory / f"{workload}-{len(list(directory.glob(f'{workload}-*')))}.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def timed_run(spec: Path, store: Path, workers: int) -> float:
    t0 = time.perf_counter()
    run = batchsweep.run(spec, store=str(store), progress=False, max_parallel=workers, reuse=False)
    wall = time.perf_counter() - t0
    counts, _ = run.counts()
    if counts.get("succeeded") != run.n_tasks:
        raise SystemExit(f"{spec.name}: not every task succeeded: {dict(counts)}")
    return wall


def run_script(script: str, args: list[str]) -> dict[str, Any]:
    """On a Dask worker: the script in a fresh directory, its metrics.json read back (a task, bare)."""
    import json as json_
    import subprocess as subprocess_
    import sys as sys_
    import tempfile as tempfile_
    from pathlib import Path as Path_

    with tempfile_.TemporaryDirectory(prefix="client-map-") as cwd:
        subprocess_.run([sys_.executable, script, *args], cwd=cwd, check=True, stdout=subprocess_.DEVNULL)
        metrics = Path_(cwd) / "metrics.json"
        return json_.loads(metrics.read_text()) if metrics.exists() else {}


def client_map_sweep(client: Any, directory: Path, n: int) -> float:
    script = str(directory / "noop.py")
    t0 = time.perf_counter()
    client.gather(client.map(run_script, [script] * n, [["--i", str(i)] for i in range(n)], pure=False))
    return time.perf_counter() - t0


def client_map_search(client: Any, directory: Path, trials: int, batch: int) -> float:
    """The same rounds a search runs (`batchsweep.planning.optuna_rounds.optimize`), each round one
    `client.map`."""
    import optuna

    from batchsweep.planning import optuna_rounds
    from batchsweep.spec.schema import Search

    spec = Search(sampler="tpe", trials=trials, batch=batch, metric="value",
                  space=SPACE)  # type: ignore[arg-type]
    script = str(directory / "branin.py")
    t0 = time.perf_counter()
    study = optuna.create_study(direction="minimize")

    def evaluate(proposals: list[optuna_rounds.Proposal]) -> list[float | None]:
        argv = [[*(f"--{k}={v}" for k, v in p.values.items()), f"--trial={p.trial}", f"--round={p.round}"]
                for p in proposals]
        results = client.gather(client.map(run_script, [script] * len(argv), argv, pure=False))
        return [r.get("value") for r in results]

    optuna_rounds.optimize(study, spec, evaluate, batch=batch)
    return time.perf_counter() - t0


def client_map_function(client: Any, workload: str, n: int, batch: int) -> float:
    """The Dask floor: the script's work as a function on the workers, no process per task."""
    import math

    def noop(i: int) -> int:
        return i

    def branin(x1: float, x2: float) -> float:
        b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
        return float((x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10)

    t0 = time.perf_counter()
    if workload == "sweep":
        client.gather(client.map(noop, range(n), pure=False))
        return time.perf_counter() - t0
    import optuna

    from batchsweep.planning import optuna_rounds
    from batchsweep.spec.schema import Search

    spec = Search(sampler="tpe", trials=n, batch=batch, metric="value", space=SPACE)  # type: ignore[arg-type]
    study = optuna.create_study(direction="minimize")

    def evaluate(proposals: list[optuna_rounds.Proposal]) -> list[float | None]:
        futures = client.map(branin, [p.values["x1"] for p in proposals], [p.values["x2"] for p in proposals],
                             pure=False)
        return list(client.gather(futures))

    optuna_rounds.optimize(study, spec, evaluate, batch=batch)
    return time.perf_counter() - t0


ROWS = ("local engine", "dask engine", "dask engine, warm: false", "client.map, script",
        "client.map, function", "dask engine, cluster: local")


def one_round(d: Path, workload: str, n: int, w: int) -> dict[str, float]:
    import distributed

    def spec(dask: dict[str, object] | None, **extra: object) -> Path:
        path = write_spec(d, workload, n, w, dask=dask)
        if extra:
            path.write_text(json.dumps({**json.loads(path.read_text()), **extra}))
        return path

    walls = {"local engine": timed_run(spec(None), d / "store", w)}
    with distributed.LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        client.run(lambda: __import__("batchsweep.engines.dask.worker"))  # every row starts from warm workers
        running = {"scheduler": cluster.scheduler_address}
        walls["dask engine"] = timed_run(spec(running), d / "store", w)
        walls["dask engine, warm: false"] = timed_run(spec(running, warm=False), d / "store", w)
        walls["client.map, script"] = (client_map_sweep(client, d, n) if workload == "sweep"
                                       else client_map_search(client, d, n, w))
        walls["client.map, function"] = client_map_function(client, workload, n, w)
    walls["dask engine, cluster: local"] = timed_run(spec({"cluster": "local"}), d / "store", w)
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="run every row this many times, keep its best")
    parser.add_argument("--only", choices=("sweep", "search"), action="append")
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    w = args.workers
    workloads = {"sweep": args.tasks, "search": args.trials}
    if args.only:
        workloads = {k: v for k, v in workloads.items() if k in args.only}
    best: dict[str, dict[str, float]] = {k: {} for k in workloads}
    with tempfile.TemporaryDirectory(prefix="dask-overhead-") as tmp:
        for _ in range(args.rounds):
            for workload, n in workloads.items():
                for name, wall in one_round(Path(tmp), workload, n, w).items():
                    best[workload][name] = min(wall, best[workload].get(name, math.inf))

    print(f"{w} workers (LocalCluster: processes x 1 thread), Python {sys.version.split()[0]}, "
          f"best of {args.rounds}")
    for workload, walls in best.items():
        n = workloads[workload]
        what = f"{n} trivial tasks" if workload == "sweep" else f"{n}-trial TPE search, rounds of {w}"
        local = walls["local engine"] * w / n
        peer = walls["client.map, script"] * w / n
        print(f"\n{what}")
        print(f"{'':<30}{'wall s':>9}{'per task ms':>14}{'/ local':>9}{'/ client.map script':>21}")
        for name in ROWS:
            per_task = walls[name] * w / n
            print(f"{name:<30}{walls[name]:>9.2f}{per_task * 1000:>14.1f}{per_task / local:>9.2f}"
                  f"{per_task / peer:>21.2f}")


if __name__ == "__main__":
    main()
