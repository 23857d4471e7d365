"""Early stopping against full runs: one 64-task sweep run twice on the local engine, side by side.

Each task prints a validation loss per epoch, `val_loss = q + 1/epoch + noise`, where its final quality q is drawn
from a known distribution (uniform 0.1..1.0, seeded by the task's `seed` param). The same sweep runs without
`stop:` and with the median rule; the bench prints task time spent, wall time, how many tasks were pruned, and
the best final val_loss found (and by which task) for each.

    python bench/early_stop.py [--tasks 64] [--epochs 20] [--pace 0.05] [--min-trials 5] [--min-steps 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import textwrap
import time
from pathlib import Path

SCRIPT = '''
import argparse, random, time
p = argparse.ArgumentParser()
p.add_argument("--seed", type=int)
p.add_argument("--epochs", type=int)
p.add_argument("--pace", type=float)
a = p.parse_args()
rng = random.Random(a.seed)
q = rng.uniform(0.1, 1.0)
for epoch in range(1, a.epochs + 1):
    time.sleep(a.pace)
    print(f"epoch {epoch} val_loss={q + 1 / epoch + rng.gauss(0, 0.01):.5f}", flush=True)
'''


def sweep(root: Path, args: argparse.Namespace, *, stop: bool) -> dict[str, float | int | str]:
    import batchsweep

    rule = (f"stop: {{metric: val_loss, rule: median, min_steps: {args.min_steps}, min_trials: {args.min_trials}}}"
            if stop else "")
    spec = root / ("with.yaml" if stop else "without.yaml")
    spec.write_text(textwrap.dedent(f"""
        name: early-stop-bench
        script: train.py
        params: {{grid: {{seed: {list(range(args.tasks))}}}, fixed: {{epochs: {args.epochs}, pace: {args.pace}}}}}
        metrics: {{stdout: 'epoch (?P<step>\\d+) val_loss=(?P<val_loss>[\\d.]+)'}}
        {rule}
    """))
    started = time.monotonic()
    run = batchsweep.run(spec, store=root / ("store-with" if stop else "store-without"), progress=False)
    wall = time.monotonic() - started
    df = run.results()
    best = df.loc[df["val_loss"].astype(float).idxmin()]
    return {"task time s": float(df["duration_s"].sum()), "wall s": wall,
            "pruned": int((df["status"] == "pruned").sum()), "succeeded": int((df["status"] == "succeeded").sum()),
            "best val_loss": float(best["val_loss"]), "best task": int(best["task"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--pace", type=float, default=0.05, help="seconds per epoch")
    parser.add_argument("--min-trials", type=int, default=5)
    parser.add_argument("--min-steps", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batchsweep-bench-") as tmp:
        root = Path(tmp)
        (root / "train.py").write_text(SCRIPT)
        os.environ.setdefault("BATCHSWEEP_SERIES_FLUSH_S", "0.25")
        results = {"without stop": sweep(root, args, stop=False), "median rule": sweep(root, args, stop=True)}
    print(f"{args.tasks} tasks x {args.epochs} epochs of {args.pace:g} s, {os.cpu_count()} cores; "
          f"median rule: min_trials {args.min_trials}, min_steps {args.min_steps}")
    keys = list(results["without stop"])
    print(f"{'':16}" + "".join(f"{k:>15}" for k in keys))
    for name, row in results.items():
        print(f"{name:16}" + "".join(f"{row[k]:>15.2f}" if isinstance(row[k], float) else f"{row[k]:>15}"
                                     for k in keys))
    a, b = results["without stop"], results["median rule"]
    print(f"task time: {float(b['task time s']) / float(a['task time s']):.0%} of the full sweep; "
          f"best val_loss {'the same task' if a['best task'] == b['best task'] else 'a different task'} "
          f"({b['best val_loss']:.4f} vs {a['best val_loss']:.4f})")


if __name__ == "__main__":
    main()
