"""Finding runs in a store: list them, open one by id, any unique part of one or "the latest", following the local
pointer of a run whose store is remote (S3).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from batchsweep.errors import RunDamaged, RunNotFound
from batchsweep.model import MAX_RUN_TASKS
from batchsweep.runs.run import Run
from batchsweep.store.core import Store
from batchsweep.store.record import StoreAccess


class RunEntry(BaseModel):
    """One run as `list_runs` finds it in a store: its run.json's summary, typed (the rest of the file is kept,
    unread: `to_dict()` gives the whole JSON). A local pointer to a run kept elsewhere (an S3 store) names that
    store and how to open it; a run.json that cannot be read is an entry too, with `damaged` saying why."""

    model_config = ConfigDict(extra="allow", frozen=True)

    run_id: str
    name: str | None = None
    backend: str | None = None
    created: str | None = None
    created_ts: float = 0
    n_tasks: int | None = Field(default=None, ge=0, le=MAX_RUN_TASKS)
    store: str | None = None
    pointer: bool = False  # a local pointer: the run's files are in `store`
    aws: StoreAccess | None = None  # a pointer's: the AWS profile and region that open `store`
    damaged: str | None = None  # why its run.json cannot be read

    @classmethod
    def of(cls, run_id: str, info: dict[str, Any]) -> RunEntry:
        """The entry of run.json `info`; RunDamaged in one line when its summary fields are not what they should be."""
        try:
            return cls.model_validate(info)
        except ValidationError as e:
            error = e.errors()[0]
            reason = f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
            raise RunDamaged(f"run {run_id}: run.json is damaged ({reason})", reason=reason) from None

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON: the run.json (or pointer) as the store holds it, or `{run_id, damaged, created_ts}`."""
        return self.model_dump(mode="json", exclude_unset=True)


def open_run(local: Store, run_id: str) -> Run:
    """The run `run_id` of this store, wherever its files are (a pointer names a remote store)."""
    info = local.run_info(run_id)
    entry = RunEntry.of(run_id, info)
    if entry.pointer and entry.store:
        aws = entry.aws or StoreAccess()
        return Run(Store.open(entry.store, aws_profile=aws.profile, aws_region=aws.region), run_id)
    return Run(local, run_id, info)


def list_runs(*, store: Store | str | None = None) -> list[RunEntry]:
    """Every run in the store, oldest first (`RunEntry`: `.to_dict()` is its run.json as the store holds it)."""
    local = store if isinstance(store, Store) else Store.open(store)
    entries = []
    for run_id in local.run_ids():
        try:
            entries.append(RunEntry.of(run_id, local.run_info(run_id)))
        except RunDamaged as e:  # reported, never hidden
            entries.append(RunEntry(run_id=run_id, damaged=e.reason, created_ts=0))
        except RunNotFound:
            continue  # a run being created right now, or a stray directory
    return sorted(entries, key=lambda e: (e.created_ts, e.run_id))


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
    """The one id of `ids` that `given` names: the id itself, else the one it begins, else the one it is part of
    (`828a`, the suffix after the date, names `mlp-20261207-040512-828a`); RunNotFound in one line listing the
    candidates when it names several, or none. Only ids the store lists: never a path (`../../x`) read as a run."""
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
        raise RunNotFound(f"run id {given!r} is ambiguous: it names {len(within)} runs ({shown}); give more of it")
    raise RunNotFound(f"run {given!r} not found in store {where}; `batchsweep runs` lists the runs")
