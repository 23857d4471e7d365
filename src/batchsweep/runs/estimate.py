"""What a sweep will take before it runs (`batchsweep estimate`, `run --dry-run`); what a finished run cost is
`batchsweep.report.cost`.

Nothing here talks to AWS: the region, spot and packing come from the spec alone, durations from an earlier
finished run of the same sweep in the local store, a local pilot of a few tasks, or the user. Every figure is
an ESTIMATE and says what it assumed.
"""

from __future__ import annotations

import functools
import os
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from batchsweep.errors import SweepError
from batchsweep.registry import DEFAULT_BACKEND
from batchsweep.report.cost import Durations, usage_of
from batchsweep.runs.durations import Latest, durations_of, latest_finished_run, packing_durations
from batchsweep.text import duration

if TYPE_CHECKING:
    from batchsweep.model import TaskStatus
    from batchsweep.planning.plan import Plan
    from batchsweep.report.cost import Estimate, RightSize
    from batchsweep.runs.catalog import RunEntry
    from batchsweep.spec.schema import Spec
    from batchsweep.store.core import Store

DEFAULT_TASK_S = 60.0


@dataclass(frozen=True)
class SweepEstimate:
    name: str
    backend: str
    n_tasks: int
    vcpus: float
    memory_mib: int
    gpus: float
    durations: Durations
    cost: Estimate | None
    cost_note: str  # why there is no cost figure, when there is none
    tasks_note: str = ""  # what the count is made of, when that is not a plain list (a search's trials)
    right_size: RightSize | None = None  # a smaller size, from what an earlier run's tasks used

    def lines(self) -> list[str]:
        d, n = self.durations, self.n_tasks
        task_s = n * d.task_s
        gpus = f", {self.gpus:g} GPU" if self.gpus else ""
        out = [
            f"ESTIMATE for sweep {self.name} on {self.backend} (nothing is submitted to make it)",
            f"tasks      {n}" + (f" ({self.tasks_note})" if self.tasks_note else ""),
            f"resources  {self.vcpus:g} vCPU, {self.memory_mib} MiB{gpus} per task",
            f"duration   {d.task_s:g} s per task ({d.source})",
            f"compute    {n} × {d.task_s:g} s = {duration(task_s)} of task time, "
            f"{task_s * self.vcpus / 3600:.3g} vCPU-hours requested",
        ]
        if not d.known:
            out.append(
                f"warning    no task duration is known: the figures here ASSUME {d.task_s:g} s per task; "
                "give --task-seconds S or --pilot N for a better one"
            )
        if self.cost is not None:
            out += self.cost.lines()
        else:
            out.append(f"cost       {self.cost_note}")
        if self.right_size is not None:
            out.append(f"right-size {self.right_size.line()}")
        return out



def estimate(
    spec: Spec | str | os.PathLike[str],
    *,
    overrides: Sequence[str] = (),
    backend: str | None = None,
    max_parallel: int | None = None,
    task_seconds: float | None = None,
    pilot: int | None = None,
    store: Store | str | None = None,
) -> SweepEstimate:
    """Task count, resources and (on an engine that prices its tasks) cost of a sweep, without running it or
    calling anything remote.

    Durations come from ``task_seconds``, else a local ``pilot`` of that many tasks, else the latest finished
    run of the same sweep in ``store``, else an assumed 60 s (said so)."""
    from batchsweep.planning import plan as planning

    p = planning.plan(
        spec, overrides=overrides, backend=backend, max_parallel=max_parallel, check_engine=False
    )
    return estimate_plan(p, task_seconds=task_seconds, pilot=pilot, store=store)


def estimate_plan(p: Plan, *, task_seconds: float | None = None, pilot: int | None = None,
                  store: Store | str | None = None) -> SweepEstimate:
    spec = p.spec
    r = spec.resources
    n = len(p.tasks) or (spec.search.trials if spec.search else 0)
    p.engine.check_resources(spec)  # the same bad-input error a real submit would give
    # The newest finished run of the sweep gives both the durations and the right size: read it once, and only
    # when one of them needs it.
    latest: Latest = functools.cache(lambda: latest_finished_run(spec.name, store=store))
    durations = _durations(p, task_seconds=task_seconds, pilot=pilot, latest=latest, store=store)
    priced = p.engine.estimate_cost(spec, n, durations)
    cost, note = (None, priced) if isinstance(priced, str) else (priced, "")
    tasks_note = ""
    if spec.search:
        batch = p.record.search.batch if p.record.search else spec.search.batch or 1
        tasks_note = (
            f"a search: {spec.search.trials} trials in {-(-spec.search.trials // batch)} rounds of up to "
            f"{batch}, one submission per round"
        )
    suggestion = right_size_of(spec, latest()) if p.engine.priced else None
    return SweepEstimate(
        name=spec.name,
        backend=spec.backend,
        n_tasks=n,
        vcpus=r.vcpus,
        memory_mib=r.memory_mib,
        gpus=r.gpus,
        durations=durations,
        cost=cost,
        cost_note=note,
        tasks_note=tasks_note,
        right_size=suggestion,
    )


# -- durations ------------------------------------------------------------------------------------


def _durations(p: Plan, *, task_seconds: float | None, pilot: int | None, latest: Latest,
               store: Store | str | None) -> Durations:
    if task_seconds is not None:
        if not task_seconds >= 0:
            raise SweepError(f"--task-seconds {task_seconds}: give a number of seconds >= 0")
        return Durations(float(task_seconds), "given with --task-seconds")
    if pilot is not None:
        return pilot_durations(p, pilot)
    earlier = packing_durations(p.spec.name, store=store, latest=latest)
    if earlier is not None:
        return earlier
    return Durations(DEFAULT_TASK_S, f"DEFAULT ASSUMPTION: no finished run of sweep {p.spec.name!r} in the "
                     "local store, no --task-seconds, no --pilot", known=False)


def earlier_run_durations(name: str, *, store: Store | str | None = None) -> Durations | None:
    """Median duration of the succeeded tasks of the newest finished local run of this sweep, if any."""
    return durations_of(latest_finished_run(name, store=store))


def earlier_right_size(spec: Spec, *, store: Store | str | None = None) -> RightSize | None:
    """The right-size suggestion for this spec's backend and size from the newest finished run of this sweep
    (any backend), if any."""
    return right_size_of(spec, latest_finished_run(spec.name, store=store))


def right_size_of(spec: Spec, latest: tuple[RunEntry, dict[int, TaskStatus]] | None) -> RightSize | None:
    """The right-size suggestion from a finished run (`latest_finished_run`) for this spec's engine and
    size."""
    from batchsweep.registry import get_engine

    if latest is None:
        return None
    return get_engine(spec.backend).right_size(spec, usage_of(latest[1].values()))


def pilot_durations(p: Plan, n: int) -> Durations:
    """Run the first ``n`` tasks here, with the local engine, into a throwaway store; their median
    duration."""
    from batchsweep.model import State
    from batchsweep.planning import plan as planning
    from batchsweep.runs import start as runs

    if n < 1:
        raise SweepError(f"--pilot {n}: give the number of tasks to try, at least 1")
    if not p.tasks:
        raise SweepError("--pilot: an adaptive search has no tasks to try up front; use --task-seconds")
    local = planning.plan(p.spec, backend=DEFAULT_BACKEND)
    local.tasks = local.tasks[:n]
    local.info = {**local.info, "n_tasks": len(local.tasks)}  # a new dict: `local.record` is read from it
    with tempfile.TemporaryDirectory(prefix="batchsweep-pilot-") as tmp:
        run = runs.start(local, store=tmp)
        run.wait(progress=False)
        statuses = run.statuses()
        ok = [
            s.duration_s for s in statuses.values() if s.state is State.SUCCEEDED and s.duration_s is not None
        ]
        if not ok:
            bad = min(statuses.values(), key=lambda s: s.index, default=None)
            why = f"task {bad.index}: {bad.error or bad.state.value}" if bad else "no task finished"
            tail = [
                line
                for line in (run.logs(bad.index, stderr=True).strip().splitlines()[-5:] if bad else [])
                if line.strip() not in why
            ]  # the last line is in the error already
            raise SweepError(
                f"--pilot {n}: none of the pilot tasks succeeded ({why}); "
                + (" | ".join(tail) + "; " if tail else "")
                + "fix the task or use --task-seconds"
            )
    return Durations(
        statistics.median(ok),
        f"median of a local pilot of {len(ok)} of {len(local.tasks)} task(s) "
        "on this machine; AWS containers may be slower or faster",
    )


