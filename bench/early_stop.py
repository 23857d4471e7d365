"""Early stopping, local against AWS Batch (emulated), side by side in one run: epochs saved by the same rule.

Each task prints a validation loss per epoch, `val_loss = q + 1/epoch + noise`, where its final quality q is
drawn from a known distribution (uniform 0.1..1.0, seeded by the task's `seed` param). The same sweep runs
with the median rule on the local engine (`--parallel` slots) and on AWS Batch: moto on 127.0.0.1 (Batch's
Docker mode off), its children played here `--parallel` at once (`batchsweep.emulator.player`), so the
containers decide from the series they read from the emulated S3. The tasks are packed as the engine packs
them by default (each child runs a contiguous block in a row, sharing one view of the run); `--per-child 1`
starts them in index order as the local engine does, each child its own process. Each engine keeps its own
default series intervals unless `--flush` sets them for both. The bench prints, for each, the epochs run and
saved (against every task running to the end), the pruned count, the step the rule named and the step a pruned
task had reached when it ended (medians), the task time and the best final val_loss found; `--full` also runs
the sweep without `stop:` locally.

    python bench/early_stop.py [--tasks 32] [--epochs 20] [--pace 0.25] [--parallel 4] [--per-child 0]
                               [--min-trials 5] [--min-steps 3] [--flush S] [--full] [--only local|aws]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

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


def write_spec(root: Path, args: argparse.Namespace, *, name: str, stop: bool, aws: bool) -> Path:
    rule = (
        f"stop: {{metric: val_loss, rule: median, min_steps: {args.min_steps}, min_trials: "
        f"{args.min_trials}}}"
        if stop
        else ""
    )
    # 0.5 vCPU a task: the local engine runs --parallel at once on 2 cores, as many as the containers played
    packing = f", tasks_per_job: {args.per_child}" if args.per_child else ""
    backend = f"backend: aws-batch\naws: {{stack: batchsweep, region: us-east-1{packing}}}\n" if aws else ""
    spec = root / f"{name}.yaml"
    spec.write_text(textwrap.dedent(f"""
        name: early-stop-bench
        script: {root / 'code' / 'train.py'}
        params: {{grid: {{seed: {list(range(args.tasks))}}}, fixed: {{epochs: {args.epochs}, pace: {args.pace}}}}}
        metrics: {{stdout: 'epoch (?P<step>\\d+) val_loss=(?P<val_loss>[\\d.]+)'}}
        {rule}
    """) + backend + f"resources: {{vcpus: {(os.cpu_count() or 1) / args.parallel:g}, memory_mib: 1024}}\n")  # noqa: E501
    return spec


def summarise(run: Any, args: argparse.Namespace, wall: float) -> dict[str, float | int | str]:
    statuses = run.statuses()
    assert len(statuses) == args.tasks, f"{len(statuses)} of {args.tasks} tasks have a status"
    ran = sum(int(s.last_step or 0) for s in statuses.values())
    pruned = [s for s in statuses.values() if s.state.value == "pruned"]
    named = [int(str(s.error).split("pruned at step ", 1)[1].split()[0]) for s in pruned]
    df = run.results()
    best = df.loc[df["val_loss"].astype(float).idxmin()]
    return {"epochs run": ran, "saved": 1 - ran / (args.tasks * args.epochs), "pruned": len(pruned),
            "rule's step": float(statistics.median(named)) if named else float("nan"),
            "ended at": (float(statistics.median(int(s.last_step or 0) for s in pruned)) if pruned
                         else float("nan")),
            "task time s": float(df["duration_s"].sum()), "wall s": wall,
            "best val_loss": float(best["val_loss"]), "best task": int(best["task"])}


def local(root: Path, args: argparse.Namespace, *, stop: bool) -> dict[str, float | int | str]:
    import batchsweep

    name = "local-stop" if stop else "local-full"
    spec = write_spec(root, args, name=name, stop=stop, aws=False)
    started = time.monotonic()
    run = batchsweep.run(spec, store=root / f"store-{name}", progress=False, max_parallel=args.parallel,
                         reuse=False)
    return summarise(run, args, time.monotonic() - started)


def aws(root: Path, args: argparse.Namespace) -> dict[str, float | int | str]:
    import batchsweep
    from batchsweep.aws import clients
    from batchsweep.emulator import player
    from batchsweep.emulator.server import MotoServer, deploy_stack, register_image
    from batchsweep.infra import image

    with MotoServer() as server:
        os.environ.update(server.env())
        session = clients.make_session(region="us-east-1")
        outputs = deploy_stack(session)
        reqs = [image.OPTUNA]  # the worker decides: stop: puts Optuna in the task image
        register_image(session, f"{image.repository_uri(outputs)}:"
                                f"{image.image_tag(image.current_dockerfile(reqs), reqs)}")
        spec = write_spec(root, args, name="aws-stop", stop=True, aws=True)
        # max_parallel packs tasks / parallel per child; with --per-child the player's --parallel caps them
        run = batchsweep.run(spec, store=root / "store-aws", detach=True, progress=False,
                             max_parallel=None if args.per_child else args.parallel, reuse=False)
        started = time.monotonic()
        played = player.play(run, parallel=args.parallel, fork=True)
        wall = time.monotonic() - started
        assert all(p.exit_code == 0 for p in played), [p.describe() for p in played]
        return summarise(batchsweep.load_run(run.id, store=root / "store-aws"), args, wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--pace", type=float, default=0.25, help="seconds per epoch")
    parser.add_argument("--parallel", type=int, default=4, help="local slots; AWS containers played at once")
    parser.add_argument("--per-child", type=int, default=0,
                        help="AWS tasks per child (0: the engine's own packing, tasks / parallel in a row "
                             "per child; 1: started in index order as the local engine starts them, each its "
                             "own process)")
    parser.add_argument("--min-trials", type=int, default=5)
    parser.add_argument("--min-steps", type=int, default=3)
    parser.add_argument("--flush", type=float,
                        help="BATCHSWEEP_SERIES_FLUSH_S for both (default: each engine's own intervals)")
    parser.add_argument("--full", action="store_true", help="also run the sweep without stop: locally")
    parser.add_argument("--only", choices=["local", "aws"], help="run one engine's stop run only")
    args = parser.parse_args()
    if args.flush is not None:
        os.environ["BATCHSWEEP_SERIES_FLUSH_S"] = str(args.flush)
    results: dict[str, dict[str, float | int | str]] = {}
    with tempfile.TemporaryDirectory(prefix="batchsweep-bench-") as tmp:
        root = Path(tmp)
        (root / "code").mkdir()
        (root / "code" / "train.py").write_text(SCRIPT)
        if args.full:
            results["local, no stop"] = local(root, args, stop=False)
        if args.only != "aws":
            results["local"] = local(root, args, stop=True)
        if args.only != "local":
            results["aws (emulated)"] = aws(root, args)
    print(f"{args.tasks} tasks x {args.epochs} epochs of {args.pace:g} s, {args.parallel} at once "
          f"(AWS: {args.per_child or 'the default number of'} tasks per child), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; median rule: min_trials "
          f"{args.min_trials}, min_steps {args.min_steps}; flush: "
          f"{args.flush if args.flush is not None else 'each engine default'}")
    keys = list(next(iter(results.values())))
    print(f"{'':16}" + "".join(f"{k:>14}" for k in keys))
    for name, row in results.items():
        cells = [f"{row[k]:>14.1%}" if k == "saved" else f"{row[k]:>14.2f}" if isinstance(row[k], float)
                 else f"{row[k]:>14}" for k in keys]
        print(f"{name:16}" + "".join(cells))
    if "local" in results and "aws (emulated)" in results:
        gap = float(results["local"]["saved"]) - float(results["aws (emulated)"]["saved"])
        print(f"epochs saved: local {float(results['local']['saved']):.1%}, aws (emulated) "
              f"{float(results['aws (emulated)']['saved']):.1%}: {gap * 100:+.1f} percentage points apart")


if __name__ == "__main__":
    main()
