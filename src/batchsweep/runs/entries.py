"""The runs a store lists, as typed entries of their run.json summaries (a local pointer to a run kept on S3
is an entry too); reading them opens no run. `catalog` opens them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from batchsweep.errors import RunDamaged, RunNotFound
from batchsweep.model import MAX_RUN_TASKS
from batchsweep.store.core import Store
from batchsweep.store.record import StoreAccess


class RunEntry(BaseModel):
    """One run as `list_runs` finds it in a store: its run.json's summary, typed (the rest of the file is
    kept, unread: `to_dict()` gives the whole JSON). A local pointer to a run kept elsewhere (an S3 store)
    names that store and how to open it; a run.json that cannot be read is an entry too, with `damaged` saying
    why."""

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
        """The entry of run.json `info`; RunDamaged in one line when its summary fields are not what they
        should be."""
        try:
            return cls.model_validate(info)
        except ValidationError as e:
            error = e.errors()[0]
            reason = f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
            raise RunDamaged(f"run {run_id}: run.json is damaged ({reason})", reason=reason) from None

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON: the run.json (or pointer) as the store holds it, or `{run_id, damaged,
        created_ts}`."""
        return self.model_dump(mode="json", exclude_unset=True)


def list_runs(*, store: Store | str | None = None) -> list[RunEntry]:
    """Every run in the store, oldest first (`RunEntry`: `.to_dict()` is its run.json as the store holds
    it)."""
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
