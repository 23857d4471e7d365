"""Warm start inside AWS Batch children: 200 pandas + numpy tasks packed 50 per child, cold against warm.

Both runs go to moto on 127.0.0.1 (Batch's Docker mode off); their children are played here, each with its own
command and environment (`batchsweep.emulator.player`, two at a time on this 2-core machine), as Batch would
start them. Prints each mode's child wall times (from the child's first task start to its last task end, as
the tasks' statuses record them) and the time a task costs, side by side, then the import cost per task that
warm start saves (a cold `python -c "import numpy, pandas"` timed here).

    .venv/bin/python bench/aws_warm.py [--tasks 200] [--per-child 50] [--parallel 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import HEAVY


def one_mode(workdir: Path, *, warm: bool, tasks: int, per_child: int, parallel: int) -> dict[str, Any]:
    import batchsweep
    from batchsweep.emulator import player

    spec = workdir / f"sweep-{'warm' if warm else 'cold'}.yaml"
    spec.write_text(f"name: heavy-{'warm' if warm else 'cold'}\nscript: {workdir / 'heavy.py'}\n"
                    f"params: {{grid: {{x: {json.dumps(list(range(tasks)))}}}}}\n"
                    f"backend: aws-batch\naws: {{stack: batchsweep, tasks_per_job: {per_child}}}\n"
                    f"resources: {{vcpus: 1, memory_mib: 2048}}\nwarm: {str(warm).lower()}\n")
    run = batchsweep.run(spec, store=workdir / "store", detach=True, progress=False, reuse=False)
    t0 = time.perf_counter()
    played = player.play(run, parallel=parallel)
    wall = time.perf_counter() - t0
    assert all(p.exit_code == 0 for p in played), [p.describe() for p in played]
    df = batchsweep.load_run(run.id, store=workdir / "store").results()
    assert set(df["status"]) == {"succeeded"}
    spans = df.groupby("worker").agg(start=("started_at", "min"), end=("ended_at", "max"))
    return {
        "wall": wall,
        "child": list(spans["end"] - spans["start"]),
        "task": float(df["duration_s"].mean()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--per-child", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()

    from batchsweep.aws import clients
    from batchsweep.emulator.server import MotoServer, deploy_stack

    imports = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import numpy, pandas"], check=True)
        imports.append(time.perf_counter() - t0)
    with MotoServer() as server, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(server.env())
        deploy_stack(clients.make_session(region="us-east-1"))
        (Path(tmp) / "heavy.py").write_text(HEAVY)
        results = {mode: one_mode(Path(tmp), warm=mode == "warm", tasks=args.tasks, per_child=args.per_child,
                                  parallel=args.parallel) for mode in ("cold", "warm")}
    cold, warm = results["cold"], results["warm"]
    children = len(cold["child"])
    print(
        f"{args.tasks} pandas + numpy tasks, {args.per_child} per child ({children} children, "
        f"{args.parallel} played at once), moto on 127.0.0.1"
    )
    print(f"{'':34}{'cold':>10}{'warm':>10}{'ratio':>9}")
    c, w = statistics.median(cold["child"]), statistics.median(warm["child"])
    print(f"{'child wall time, median (s)':34}{c:>10.2f}{w:>10.2f}{c / w:>8.1f}x")
    print(
        f"{'task duration, mean (s)':34}{cold['task']:>10.3f}{warm['task']:>10.3f}"
        f"{cold['task'] / warm['task']:>8.1f}x"
    )
    print(
        f"{'all children played (s)':34}{cold['wall']:>10.2f}{warm['wall']:>10.2f}"
        f"{cold['wall'] / warm['wall']:>8.1f}x"
    )
    saved = (c - w) / args.per_child
    print(
        f"saved per task {saved:.3f} s; a cold `import numpy, pandas` here takes "
        f"{statistics.median(imports):.3f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
