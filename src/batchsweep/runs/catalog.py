"""Finding runs in a store: list them, open one by id, any unique part of one or "the latest", following the
local pointer of a run whose store is remote (S3).
"""

from __future__ import annotations

from batchsweep.errors import RunNotFound
from batchsweep.runs.entries import RunEntry, list_runs
from batchsweep.runs.run import Run
from batchsweep.store.core import Store
from batchsweep.store.record import StoreAccess

__all__ = ["RunEntry", "list_runs", "load_run", "match_run_id", "open_run"]


def open_run(local: Store, run_id: str) -> Run:
    """The run `run_id` of this store, wherever its files are (a pointer names a remote store)."""
    info = local.run_info(run_id)
    entry = RunEntry.of(run_id, info)
    if entry.pointer and entry.store:
        aws = entry.aws or StoreAccess()
        run = Run(Store.open(entry.store, aws_profile=aws.profile, aws_region=aws.region), run_id)
        run.home = local
        return run
    return Run(local, run_id, info)


def load_run(run_id: str | None = None, *, store: Store | str | None = None) -> Run:
    """A run by id (or any unique part of one: `match_run_id`); the latest run when run_id is None."""
    local = store if isinstance(store, Store) else Store.open(store)
    if run_id is None:
        entries = [e for e in list_runs(store=local) if not e.damaged]
        if not entries:
            raise RunNotFound(f"no runs in store {local.url}; start one with `batchsweep run sweep.yaml`")
        return open_run(local, entries[-1].run_id)
    return open_run(local, match_run_id(run_id, local.run_ids(), local.url))


def match_run_id(given: str, ids: list[str], where: str) -> str:
    """The one id of `ids` that `given` names: the id itself, else the one it begins, else the one it is part
    of (`828a`, the suffix after the date, names `mlp-20261207-040512-828a`); RunNotFound in one line listing
    the candidates when it names several, or none. Only ids the store lists: never a path (`../../x`) read as
    a run."""
    if given in ids:
        return given
    within = sorted(i for i in ids if given in i) if given else []
    prefixed = [i for i in within if i.startswith(given)]
    if len(prefixed) == 1:
        return prefixed[0]
    if len(within) == 1:
        return within[0]
    if within:
        shown = ", ".join(within[:10]) + (f" and {len(within) - 10} more" if len(within) > 10 else "")
        raise RunNotFound(
            f"run id {given!r} is ambiguous: it names {len(within)} runs ({shown}); give more of it"
        )
    raise RunNotFound(f"run {given!r} not found in store {where}; `batchsweep runs` lists the runs")
