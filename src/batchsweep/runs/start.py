"""A Plan becomes a Run: `start` looks up reuse, claims a free run id, writes the run's records and submits
it; `run` plans, starts and waits (`batchsweep.run`). What is done with a Run afterwards is
`batchsweep.runs.run`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from batchsweep.errors import SweepError
from batchsweep.planning.plan import Plan, find_reuse, metrics_rule, new_run_id, plan
from batchsweep.runs.run import Run
from batchsweep.spec.schema import Spec
from batchsweep.store import runlock
from batchsweep.store.core import Store
from batchsweep.store.record import RunRecord, StoreAccess

if TYPE_CHECKING:
    from batchsweep.planning.reuse import Reuse


def start(p: Plan, *, store: Store | str | None = None, detach: bool = False, reuse: bool | Reuse = True,
          say: Callable[[str], None] | None = None) -> Run:
    """Write the run to the store and submit it. A failed submit leaves no run behind.

    With `reuse` (the default), tasks that already succeeded with the same content key in this store are
    copied, not run (`batchsweep.planning.reuse`); `say` gets the one-line account ("120 tasks: 96 reused
    ...")."""
    from batchsweep.planning.reuse import Reuse, copy_results

    if p.spec.search:  # refused before anything is uploaded or written
        from batchsweep.planning.search import no_detach

        no_detach(detach)
    local = store if isinstance(store, Store) else Store.open(store)
    run_store = p.engine.run_store(p.record.engine, local)
    reuse_on = reuse is not False  # recorded: a search's rounds and `resume` reuse only when the run did
    if reuse is True:
        reuse = find_reuse(p, store=local)
    elif reuse is False:
        reuse = Reuse(len(p.tasks))
    if say is not None:
        for ref, why in sorted(p.unkeyed.items()):
            say(
                f"inputs: {ref} could not be identified by content ({why}); its tasks run again, never reused"
            )
        # (a first run: nothing to say)
        if reuse_on and p.tasks and not p.spec.search and (reuse.found or reuse.earlier):
            say(reuse.line())
    lock = _claim_run_id(p, run_store, local)
    run_id = p.record.run_id
    try:
        info = {**p.info, "store": run_store.url, "reused": len(reuse.found), "reuse": reuse_on}
        if reuse_on and p.tasks and not p.spec.search:
            info["reuse_account"] = reuse.account()
        if p.engine.packs_by_duration:  # the figure a dry run packed by, so both pack alike
            from batchsweep.runs.durations import packing_durations

            earlier = packing_durations(p.spec.name, store=local)
            info["median_task_s"] = earlier.task_s if earlier is not None else None
        info.update(p.engine.prepare(p.spec, run_store, info))
        run_store.create_run(run_id, info, p.tasks)
        if reuse.found:
            copy_results(run_store, run_id, p.tasks, reuse, metrics_rule=metrics_rule(p.spec))
        if run_store.url != local.url:
            local.write_json(local.run_record_key(run_id),
                             {"run_id": run_id, "pointer": True, **_summary_fields(p.record, run_store.url)})
        run = Run(run_store, run_id, info)
        run.home = local if run_store.url != local.url else None
        run._hold_with(lock)
        if p.spec.search:
            from batchsweep.planning import search

            search.start(run, detach=detach)  # rounds are submitted by Run.wait
        else:
            run._submit([t.index for t in reuse.to_run(p.tasks)], detach=detach)
    except BaseException:
        lock.release()
        run_store.delete_run(run_id)
        if run_store.url != local.url:
            local.delete_run(run_id)
        raise
    if detach:
        run._let_go()
    return run


def _claim_run_id(p: Plan, run_store: Store, local: Store) -> runlock.RunLock:
    """Create the run's lock exclusively: an id that collides with any earlier run gets a new suffix."""
    for _ in range(20):
        run_id = p.record.run_id
        taken = any(
            s.backend.exists(s.run_record_key(run_id))
            for s in {id(local): local, id(run_store): run_store}.values()
        )
        if not taken:
            lock = runlock.RunLock.create(run_store, run_id, command="batchsweep run")
            if lock is not None:
                return lock
        p.info = {**p.info, "run_id": new_run_id(p.spec.name)}  # a new dict: `p.record` is read from it
    raise SweepError(f"could not find a free run id for {p.spec.name} in {run_store.url}")


def _summary_fields(record: RunRecord, store_url: str) -> dict[str, Any]:
    """What a local pointer to a run kept elsewhere says of it, and how to open its store (AWS profile,
    region)."""
    access = record.engine_as(StoreAccess)
    return {"name": record.name, "backend": record.backend, "created": record.created,
            "created_ts": record.created_ts, "n_tasks": record.n_tasks, "store": store_url,
            "aws": {"profile": access.profile, "region": access.region}}


def run(spec: Spec | str | os.PathLike[str], *, overrides: Sequence[str] = (), backend: str | None = None,
        store: Store | str | None = None, detach: bool = False, progress: bool = True,
        max_parallel: int | None = None, reuse: bool = True, **set_values: Any) -> Run:
    """Run a sweep and wait for it (unless detach). `run("sweep.yaml", timeout="30m")` overrides like --set.
    `reuse=False` runs every task, even those that already succeeded with the same content key."""
    import sys

    extra = [f"{k}={v}" for k, v in set_values.items()]
    p = plan(spec, overrides=[*overrides, *extra], backend=backend, max_parallel=max_parallel)
    r = start(p, store=store, detach=detach, reuse=reuse,
              say=(lambda line: print(line, file=sys.stderr, flush=True)) if progress else None)
    del p  # its tasks are in the store now: a 100,000-task plan is not held while the run is waited for
    if not detach:
        r.wait(progress=progress)
    return r
