"""Finding runs in a store: list them, open one by id, unique prefix or "the latest", following the local
pointer of a run whose store is remote (S3).
"""

from __future__ import annotations

from typing import Any

from batchsweep.errors import RunDamaged, RunNotFound
from batchsweep.runs import Run
from batchsweep.store import Store


def open_run(local: Store, run_id: str) -> Run:
    """The run `run_id` of this store, wherever its files are (a pointer names a remote store)."""
    info = local.run_info(run_id)
    if info.get("pointer"):
        aws = info.get("aws") or {}
        remote = Store.open(info["store"], aws_profile=aws.get("profile"), aws_region=aws.get("region"))
        return Run(remote, run_id)
    return Run(local, run_id, info)


def list_runs(*, store: Store | str | None = None) -> list[dict[str, Any]]:
    """run.json of every run in the store, oldest first."""
    local = store if isinstance(store, Store) else Store.open(store)
    infos = []
    for run_id in local.run_ids():
        try:
            infos.append(local.run_info(run_id))
        except RunDamaged as e:
            infos.append({"run_id": run_id, "damaged": e.reason, "created_ts": 0})  # reported, never hidden
        except RunNotFound:
            continue  # a run being created right now, or a stray directory
    return sorted(infos, key=lambda i: (i.get("created_ts", 0), i["run_id"]))


def load_run(run_id: str | None = None, *, store: Store | str | None = None) -> Run:
    """A run by id (or a unique prefix of one); the latest run when run_id is None."""
    local = store if isinstance(store, Store) else Store.open(store)
    if run_id is None:
        infos = [i for i in list_runs(store=local) if not i.get("damaged")]
        if not infos:
            raise RunNotFound(f"no runs in store {local.url}; start one with `batchsweep run sweep.yaml`")
        return open_run(local, infos[-1]["run_id"])
    ids = local.run_ids()
    if run_id not in ids:
        matches = [i for i in ids if i.startswith(run_id)] if run_id else []
        if len(matches) > 1:
            raise RunNotFound(f"run id {run_id!r} is ambiguous: {', '.join(sorted(matches)[:5])}; give more of it")
        if not matches:  # only ids the store lists: never a path (`../../x`) read as a run
            raise RunNotFound(f"run {run_id!r} not found in store {local.url}; `batchsweep runs` lists the runs")
        run_id = matches[0]
    return open_run(local, run_id)
