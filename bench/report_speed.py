"""`batchsweep report` of a 20-task and of a 10,000-task run, as a user meets it in a new process, against a
peer that draws the same views of the same results: Optuna's own plotting (plotly), in one run with the ratio
printed.

    .venv/bin/python bench/report_speed.py                       # 20 and 10,000 tasks, 3 rounds each
    .venv/bin/python bench/report_speed.py --tasks 20 --rounds 5 --before REV

Two finished runs of a script that writes val_loss and acc to metrics.json, params lr (log-uniform), width (a
choice) and dropout (uniform) drawn at random, as a random search leaves them: the small one run for real
(`batchsweep run`), the large one written straight into a store as the runner leaves it (a status.json and a
metrics.json per task; running 10,000 real tasks here would take the bench's whole budget for the same files).
Each is reported once untimed (bytecode and results.parquet written, as a user's report after the run finds
them), then, alternating, `--rounds` times by:
- batchsweep: `batchsweep report RUN -o report.html` in a new process (this checkout's code; with `--before
  REV` also commit REV's `src/`);
- Optuna: a new process reads the run's results.parquet with pandas, adds every finished task to an in-memory
  study as a trial (`optuna.trial.create_trial`), draws `plot_optimization_history`, `plot_slice`,
  `plot_contour` of the two most important params, `plot_edf`, `plot_parallel_coordinate` and
  `plot_param_importances` (Optuna's default evaluator) and writes them to one HTML page with plotly.js in it
  once: the views batchsweep's report of a search draws, less its tables, timeline and durations.
Printed per run size and reporter: best and median wall time and CPU time (user + sys of the process), the
ratio of the peer's best to batchsweep's (wall and CPU), and whether scikit-learn was imported. Setup installs
plotly (pip, into this interpreter) when it is missing; Optuna comes with the project's `search` extra.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

SCRIPT = '''\
import argparse, json, math, random
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.01)
p.add_argument("--width", type=int, default=32)
p.add_argument("--dropout", type=float, default=0.1)
a = p.parse_args()
loss = (math.log10(a.lr) + 2.5) ** 2 + 8 / a.width + a.dropout + random.random() / 10
json.dump({"val_loss": loss, "acc": 1 / (1 + loss)}, open("metrics.json", "w"))
'''

SPEC = """\
name: reportbench
script: train.py
params:
  random:
    samples: {n}
    seed: 1
    space: {{lr: 'loguniform(0.0001, 1.0)', width: 'choice(8, 16, 32, 64)', dropout: 'uniform(0, 0.5)'}}
metrics: metrics.json
"""

# Run in the reporting process: reports, then says whether scikit-learn was imported and where batchsweep came
# from.
REPORT = '''\
import sys
from batchsweep import cli
code = cli.main(["report", sys.argv[3], "--store", sys.argv[1], "-o", sys.argv[2], "--metric", "val_loss"])
print("sklearn" in sys.modules, cli.__file__, file=sys.stderr)
sys.exit(code)
'''

# The peer: Optuna's own plotting of the same finished tasks, one HTML page.
OPTUNA = '''\
import sys
import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna import visualization as vis

optuna.logging.set_verbosity(optuna.logging.WARNING)
df = pd.read_parquet(sys.argv[1])
df = df[df["status"] == "succeeded"]
dists = {"lr": FloatDistribution(1e-4, 1.0, log=True), "width": CategoricalDistribution([8, 16, 32, 64]),
         "dropout": FloatDistribution(0.0, 0.5)}
study = optuna.create_study(direction="minimize")
study.add_trials([optuna.trial.create_trial(params={"lr": float(r.lr), "width": int(r.width),
                                                    "dropout": float(r.dropout)},
                                            distributions=dists, value=float(r.val_loss))
                  for r in df.itertuples()])
importance = vis.plot_param_importances(study)  # importance computed once: the bars, least important first
top2 = list(importance.data[0].y)[::-1][:2]
figures = [vis.plot_optimization_history(study), vis.plot_slice(study), vis.plot_contour(study, params=top2),
           vis.plot_edf(study), vis.plot_parallel_coordinate(study), importance]
with open(sys.argv[2], "w") as out:
    out.write("<html><body>")
    for i, fig in enumerate(figures):
        out.write(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    out.write("</body></html>")
print("sklearn" in sys.modules, optuna.__file__, file=sys.stderr)
'''


def setup() -> None:
    if importlib.util.find_spec("plotly") is None:
        print("setup: installing plotly (pip)", file=sys.stderr)
        uv = Path(PY).parent / "uv"
        cmd = [str(uv), "pip", "install", "--python", PY, "-q", "plotly"] if uv.exists() else \
            [PY, "-m", "pip", "install", "-q", "plotly"]
        subprocess.run(cmd, check=True)
    if importlib.util.find_spec("optuna") is None:
        sys.exit("optuna is missing: make setup installs the project's search extra")


def checkout(rev: str, target: Path) -> Path:
    """The `src/` of commit `rev`, unpacked under target (the venv's editable install is shadowed by
    PYTHONPATH)."""
    target.mkdir(parents=True, exist_ok=True)
    archive = target / "src.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target / "src"


def real_run(work: Path, n: int) -> tuple[Path, str]:
    """A run of n tasks by `batchsweep run`, as a user makes it."""
    work.mkdir(parents=True)
    (work / "train.py").write_text(SCRIPT)
    (work / "sweep.yaml").write_text(SPEC.format(n=n))
    store = work / "store"
    done = subprocess.run([PY, "-m", "batchsweep", "run", str(work / "sweep.yaml"), "--store", str(store)],
                          cwd=work, check=True, capture_output=True, text=True)
    return store, done.stdout.split()[0]


def written_run(work: Path, n: int) -> tuple[Path, str]:
    """A finished run of n tasks written into a store as the runner leaves it: the run's manifest from the
    spec's own plan, then a metrics.json and a status.json per task (fsync skipped: the bytes are the
    same)."""
    from batchsweep.model import State, TaskStatus
    from batchsweep.planning import plan as planning
    from batchsweep.store.core import Store

    work.mkdir(parents=True)
    (work / "train.py").write_text(SCRIPT)
    (work / "sweep.yaml").write_text(SPEC.format(n=n))
    p = planning.plan(work / "sweep.yaml")
    store = Store.open(work / "store")
    run_id = p.info["run_id"]
    store.create_run(run_id, {**p.info, "base_dir": str(work)}, p.tasks)
    rng = random.Random(0)
    start = time.time() - n

    def one(task: object) -> None:
        i, a = task.index, task.params  # type: ignore[attr-defined]
        loss = (math.log10(a["lr"]) + 2.5) ** 2 + 8 / a["width"] + a["dropout"] + rng.random() / 10
        store.write_json(store.task_key(run_id, i, "metrics.json"), {"val_loss": loss, "acc": 1 / (1 + loss)})
        store.write_status(
            run_id,
            TaskStatus(
                index=i,
                state=State.SUCCEEDED,
                exit_code=0,
                worker=f"local-{i % 2}",
                started_at=start + i / 2,
                ended_at=start + i / 2 + 1.0 + rng.random(),
            ),
        )

    fsync, os.fsync = os.fsync, lambda fd: None
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(one, p.tasks))
    finally:
        os.fsync = fsync
    return work / "store", run_id


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed: {done.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stderr.strip().splitlines()[-1]


WARM: set[str] = set()


def bench(
    label: str, store: Path, run_id: str, out: Path, rounds: int, before: tuple[str, Path] | None
) -> None:
    # bytecode kept, as for a user
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    parquet = store / "runs" / run_id / "results.parquet"
    reporters: dict[str, tuple[list[str], dict[str, str]]] = {
        "batchsweep report": ([PY, "-c", REPORT, str(store), str(out / "report.html"), run_id], env)}
    if before is not None:
        reporters[f"batchsweep report before ({before[0][:12]})"] = (
            [PY, "-c", REPORT, str(store), str(out / "before.html"), run_id],
            {**env, "PYTHONPATH": str(before[1])},
        )
    reporters["Optuna plotting (plotly)"] = ([PY, "-c", OPTUNA, str(parquet), str(out / "optuna.html")], env)
    # once each, untimed: bytecode written and the run's results.parquet gathered, as after the run (a peer
    # that warmed up on an earlier run size has its bytecode already)
    for name, (argv, e) in reporters.items():
        if name.startswith("batchsweep") or name not in WARM:
            timed(argv, e)
            WARM.add(name)
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in reporters}
    seen: dict[str, str] = {}
    for _ in range(rounds):
        for name, (argv, e) in reporters.items():
            wall, cpu, seen[name] = timed(argv, e)
            figures[name].append((wall, cpu))
    load = os.getloadavg()[0]
    print(f"{label}, {rounds} rounds, load average {load:.1f} on {os.cpu_count()} cores")
    ours = figures["batchsweep report"]
    for name, runs in figures.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        sklearn = seen[name].split(" ", 1)[0] == "True"
        ratio = "" if name == "batchsweep report" else (
            f" · {min(walls) / min(w for w, _ in ours):.1f}x batchsweep's wall, "
            f"{min(cpus) / min(c for _, c in ours):.1f}x its CPU")
        print(f"  {name:<38} wall best {min(walls):6.2f} s, median {statistics.median(walls):6.2f} s · "
              f"CPU best {min(cpus):6.2f} s, median {statistics.median(cpus):6.2f} s · "
              f"scikit-learn imported: {sklearn}{ratio}")
    sizes = {name: (out / f).stat().st_size for name, f in
             (("batchsweep", "report.html"), ("optuna", "optuna.html"))}
    print(
        f"  page size: batchsweep {sizes['batchsweep'] / 1e6:.1f} MB, Optuna {sizes['optuna'] / 1e6:.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[20, 10000],
                        help="run sizes (up to 100 are run for real, larger ones written into the store)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", default=None, help="also report with this commit's src/")
    args = parser.parse_args()
    setup()
    with tempfile.TemporaryDirectory(prefix="report-bench-") as tmp:
        work = Path(tmp)
        before = (args.before, checkout(args.before, work / "before")) if args.before else None
        for n in args.tasks:
            t0 = time.perf_counter()
            store, run_id = real_run(work / f"run{n}", n) if n <= 100 else written_run(work / f"run{n}", n)
            how = "run by `batchsweep run`" if n <= 100 else "written into the store"
            print(f"setup: a {n}-task run {how} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            bench(f"report of a {n}-task run (random lr, width, dropout)", store, run_id, work / f"run{n}",
                  args.rounds, before)


if __name__ == "__main__":
    main()
