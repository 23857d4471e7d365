"""What early stopping costs in S3 requests on AWS Batch: requests per container-hour and their price.

A container running tasks with `stop:` lists the run's task files in S3 and reads the other tasks' series and
statuses to decide (batchsweep.task.stopping.RunView). This bench runs that real code for one simulated hour
of one container, against a simulated bucket that bills like S3 (a LIST request per 1,000 keys listed, a GET
per object read) and a run that moves on meanwhile: `--containers` containers run tasks of `--task-minutes`
each, so tasks finish, start and report steps all hour; the measured container runs its tasks back to back and
reports a step every `--step-seconds`. The series flush is S3's default, 5 s.

Two ways side by side, each from the same world:
- before: a fresh view per task (a task re-reads every finished task) and a listing at every check — the
  behaviour before listings were spaced;
- after: one view per container (`stopping.shared_view`), listings spaced to one LIST page per flush on
  average and backed off while nothing changes, running series re-read only when their size changed.
Both skip checks before the rule's first step (min_steps). Optuna's decision itself is left out (it makes no
request): only the reads are measured. Prices: S3 Standard us-east-1, $0.005 per 1,000 LIST and $0.0004 per
1,000 GET (check before relying on them); compared with the container's own Fargate price.

    python bench/stop_requests.py [--tasks 1000 10000] [--containers 100] [--task-minutes 10] [--step-seconds 5 30]
"""  # noqa: E501

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from batchsweep.store.core import Store  # noqa: E402
from batchsweep.task import stopping  # noqa: E402

LIST_USD = 0.005 / 1000
GET_USD = 0.0004 / 1000
FLUSH_S = 5.0
FARGATE_HOUR = 0.5 * 0.04048 + 1 * 0.004445  # 0.5 vCPU, 1 GB on-demand, us-east-1
RUN = "r1"


class Bucket:
    """An S3 bucket as the bill sees it: LIST requests (a page per 1,000 keys) and GETs."""

    url = "s3://bench/batchsweep"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.lists = 0
        self.gets = 0

    def list_sizes(self, prefix: str) -> dict[str, int]:
        found = {k: len(v) for k, v in self.objects.items() if k.startswith(prefix.rstrip("/") + "/")}
        self.lists += max(1, math.ceil(len(found) / stopping.LIST_PAGE))
        return found

    def read_bytes(self, key: str) -> bytes:
        self.gets += 1
        try:
            return self.objects[key]
        except KeyError:
            raise FileNotFoundError(key) from None

    def write_bytes(self, key: str, data: bytes) -> None:
        self.objects[key] = data


class World:
    """A run of `tasks` tasks on `containers` containers, half done when the hour starts."""

    def __init__(self, args: argparse.Namespace, tasks: int, bucket: Bucket) -> None:
        self.b, self.tasks, self.args = bucket, tasks, args
        self.duration = args.task_minutes * 60
        self.next_index = tasks // 2
        self.running: dict[int, float] = {}  # index -> start time
        for i in range(tasks // 2):
            self._finish(i, steps=int(self.duration // args.step_seconds))
        for c in range(args.containers - 1):  # the others, at staggered points of their tasks
            self.running[self._start()] = -self.duration * c / args.containers

    def _key(self, index: int, name: str) -> str:
        return f"runs/{RUN}/tasks/{index}/{name}"

    def _series(self, index: int, steps: int) -> bytes:
        return "".join(json.dumps({"step": s, "val_loss": 1 + (index % 7) / s, "t": 0}) + "\n"
                       for s in range(1, steps + 1)).encode()

    def _start(self) -> int:
        index = self.next_index
        self.next_index += 1
        return index

    def _finish(self, index: int, *, steps: int) -> None:
        status = {"index": index, "state": "succeeded", "started_at": 0, "ended_at": 1, "last_step": steps}
        for name, data in (
            ("stdout.log", b"x" * 200),
            ("stderr.log", b""),
            ("metrics.json", b"{}"),
            ("metrics.jsonl", self._series(index, steps)),
            ("status.json", json.dumps(status).encode()),
        ):
            self.b.objects[self._key(index, name)] = data

    def advance(self, now: float) -> None:
        """The other containers at `now`: each finished task is replaced by the next; running series grow."""
        for index, started in list(self.running.items()):
            steps = int((now - started) // self.args.step_seconds)
            if now - started >= self.duration:
                self._finish(index, steps=steps)
                del self.running[index]
                if self.next_index < self.tasks:
                    self.running[self._start()] = now
            elif steps > 0:
                self.b.objects[self._key(index, "metrics.jsonl")] = self._series(index, steps)


def simulate(args: argparse.Namespace, tasks: int, *, after: bool) -> tuple[int, int, float]:
    """(LIST requests, GETs, seconds of the hour) of one container's stopper over the simulated hour."""
    bucket = Bucket()
    world = World(args, tasks, bucket)
    store = Store(bucket)  # type: ignore[arg-type]
    clock = [0.0]
    stop = {"metric": "val_loss", "rule": args.rule, "min_steps": args.min_steps, "max_steps": 100}
    running_too = args.rule in ("halving", "hyperband")

    def view() -> stopping.RunView:
        return stopping.RunView(
            store,
            RUN,
            "val_loss",
            running_too=running_too,
            every=FLUSH_S if after else 0.0,
            clock=lambda: clock[0],
        )

    shared = view()
    stopper, own, started, records = None, -1, 0.0, []
    real_decide = stopping.decide
    stopping.decide = lambda *a, **k: None  # Optuna's decision makes no request: left out of the bench
    try:
        t = 0.0
        while t < 3600:
            clock[0] = t
            world.advance(t)
            if stopper is None or t - started >= world.duration:
                own, started, records = world._start(), t, []
                stopper = stopping.Stopper(stop, store, RUN, own, view=shared if after else view())
            steps = int((t - started) // args.step_seconds)
            if steps > len(records):
                records = [{"step": s, "val_loss": 1 + 1 / s} for s in range(1, steps + 1)]
                stopper.check(records)  # the worker asks after each flush that added steps
            t += FLUSH_S
    finally:
        stopping.decide = real_decide
    return bucket.lists, bucket.gets, 3600.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--task-minutes", type=float, default=10)
    parser.add_argument("--step-seconds", type=float, nargs="+", default=[5, 30])
    parser.add_argument("--rule", default="median", choices=["median", "hyperband"])
    parser.add_argument("--min-steps", type=int, default=3)
    args = parser.parse_args()
    print(
        f"one container-hour with stop: {args.rule} (min_steps {args.min_steps}), {args.containers} "
        f"containers, tasks of {args.task_minutes:g} min, flush {FLUSH_S:g} s; a 0.5 vCPU / 1 GB Fargate "
        f"container costs ${FARGATE_HOUR:.4f}/h"
    )
    print(
        f"{'tasks':>6} {'step s':>6} {'way':>6} {'LIST/h':>8} {'GET/h':>8} {'$/container-h':>14} "
        f"{'% of Fargate':>12}"
    )
    for tasks in args.tasks:
        for step in list(args.step_seconds):
            one = argparse.Namespace(**{**vars(args), "step_seconds": step})
            for after in (False, True):
                lists, gets, seconds = simulate(one, tasks, after=after)
                scale = 3600 / seconds
                usd = (lists * LIST_USD + gets * GET_USD) * scale
                print(f"{tasks:>6} {step:>6g} {'after' if after else 'before':>6} {lists * scale:>8.0f} "
                      f"{gets * scale:>8.0f} {usd:>14.4f} {usd / FARGATE_HOUR:>12.0%}", flush=True)


if __name__ == "__main__":
    main()
