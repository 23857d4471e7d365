"""Submitting 10,000 tasks: batchsweep (array jobs) against the tutorials' loop of one submit_job per task.

Both run against the same moto server on 127.0.0.1 in one run; API calls are counted with a botocore event
hook on the clients each side uses. Prints calls and wall time side by side, with ratios.

    .venv/bin/python bench/aws_submit.py [--tasks 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import CALLS, observe_every_call

from batchsweep.aws import clients
from batchsweep.emulator.server import MotoServer, deploy_stack

TASK = Path(__file__).parent / "trivial.py"




def batchsweep_submit(n: int, workdir: Path) -> tuple[float, Counter[str]]:
    import batchsweep

    spec = workdir / "sweep.yaml"
    spec.write_text(
        f"name: bench\nscript: {TASK}\nparams: {{grid: {{i: {json.dumps(list(range(n)))}}}}}\nbackend: "
        "aws-batch\naws: {stack: batchsweep, tasks_per_job: 1}\nresources: {vcpus: 1, memory_mib: "
        "2048}\n"
    )
    CALLS.clear()
    t0 = time.perf_counter()
    batchsweep.run(spec, store=workdir / "store", detach=True)
    return time.perf_counter() - t0, Counter(CALLS)


def tutorial_loop(n: int, outputs: dict[str, str]) -> tuple[float, Counter[str]]:
    """What the tutorials do: one submit_job per task, parameters in environment overrides."""
    batch = clients.make_client("batch", region="us-east-1")
    CALLS.clear()
    t0 = time.perf_counter()
    for i in range(n):
        batch.submit_job(
            jobName=f"task-{i}",
            jobQueue=outputs["JobQueue"],
            jobDefinition=outputs["JobDefinition"],
            containerOverrides={"environment": [{"name": "I", "value": str(i)}]},
        )
    return time.perf_counter() - t0, Counter(CALLS)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=10_000)
    args = parser.parse_args()
    with MotoServer() as server, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(server.env())
        observe_every_call()
        outputs = deploy_stack(clients.make_session(region="us-east-1"))
        ours_s, ours = batchsweep_submit(args.tasks, Path(tmp))
        loop_s, loop = tutorial_loop(args.tasks, outputs)
    ours_batch = sum(v for k, v in ours.items() if k.startswith("batch."))
    ours_s3 = sum(v for k, v in ours.items() if k.startswith("s3."))
    loop_batch = sum(v for k, v in loop.items() if k.startswith("batch."))
    print(f"submitting {args.tasks:,} tasks to moto on 127.0.0.1")
    print(f"{'':28}{'batchsweep':>14}{'submit_job loop':>18}{'ratio':>10}")
    print(f"{'Batch API calls':28}{ours_batch:>14,}{loop_batch:>18,}{loop_batch / max(ours_batch, 1):>9.0f}x")
    print(f"{'S3 requests':28}{ours_s3:>14,}{0:>18,}")
    print(f"{'other AWS calls':28}{sum(ours.values()) - ours_batch - ours_s3:>14,}{0:>18,}")
    print(f"{'wall time (s)':28}{ours_s:>14.2f}{loop_s:>18.2f}{loop_s / ours_s:>9.1f}x")
    print(f"batchsweep calls: {dict(sorted(ours.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
