"""How long a sweep's tasks take, from the newest finished run of it this machine knows, without calling AWS:
what `estimate` and a dry run assume, and what a submit that packs tasks into children packs by (the same
figure, so both pack alike)."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from typing import TYPE_CHECKING

from batchsweep.report.cost import Durations

if TYPE_CHECKING:
    from batchsweep.model import TaskStatus
    from batchsweep.runs.entries import RunEntry
    from batchsweep.store.core import Store

Latest = Callable[[], "tuple[RunEntry, dict[int, TaskStatus]] | None"]


def _names_s3(store: str | None) -> bool:
    """Whether a store named by URL (or BATCHSWEEP_STORE when none is) is on S3."""
    return str(store or os.environ.get("BATCHSWEEP_STORE") or "").startswith("s3://")


def latest_finished_run(
    name: str, *, store: Store | str | None = None
) -> tuple[RunEntry, dict[int, TaskStatus]] | None:
    """The newest finished local run of this sweep (its run.json and statuses), if any.
    Runs kept on S3 (a local pointer only) are skipped: reading them would call AWS."""
    from batchsweep.runs.entries import list_runs
    from batchsweep.store.core import Store

    if not isinstance(store, Store) and _names_s3(store):
        return None  # an S3 store: reading it would call AWS
    local = store if isinstance(store, Store) else Store.open(store)
    if not local.is_local:
        return None
    for entry in reversed(list_runs(store=local)):
        if entry.name != name or entry.pointer or entry.damaged:
            continue
        statuses = local.statuses(entry.run_id)
        if len(statuses) < (entry.n_tasks or 0):
            continue  # still running or interrupted
        return entry, statuses
    return None


def packing_durations(name: str, *, store: Store | str | None = None,
                      latest: Latest | None = None) -> Durations | None:
    """The task time of the newest finished run of this sweep this machine knows, without calling AWS: its
    newest finished local run, or the figure `results` kept in the local store for a run it read (an S3 run
    through its local pointer), whichever was created last. A dry run shows it; a submit that packs tasks by
    it uses the same."""
    from batchsweep.store.core import Store as Store_

    newest = (latest or (lambda: latest_finished_run(name, store=store)))()
    found = durations_of(newest)
    if not isinstance(store, Store_) and _names_s3(store):
        return found
    local = store if isinstance(store, Store_) else Store_.open(store)
    if not local.is_local:
        return found
    try:
        stats = dict(local.read_json(local.sweep_stats_key(name)))
        kept = Durations(
            float(stats["median_task_s"]),
            f"median of {int(stats['tasks'])} succeeded task(s) of "
            f"earlier run {stats['run_id']} ({stats.get('backend', '?')})",
            from_earlier_run=True,
        )
        kept_ts = float(stats.get("created_ts") or 0.0)
    except Exception:  # noqa: BLE001 - none yet, or damaged: the figure only sizes children
        return found
    if found is None or newest is None or kept_ts > (newest[0].created_ts or 0.0):
        return kept
    return found


def durations_of(latest: tuple[RunEntry, dict[int, TaskStatus]] | None) -> Durations | None:
    """Median duration of the succeeded tasks of a finished run (`latest_finished_run`), if any."""
    from batchsweep.model import State

    if latest is None:
        return None
    entry, statuses = latest
    ok = [s.duration_s for s in statuses.values() if s.state is State.SUCCEEDED and s.duration_s is not None]
    if not ok:
        return None
    return Durations(statistics.median(ok), f"median of {len(ok)} succeeded task(s) of earlier run "
                     f"{entry.run_id} ({entry.backend})", from_earlier_run=True)
