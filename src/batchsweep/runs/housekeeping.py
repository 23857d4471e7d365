"""`batchsweep runs rm RUN...` and `batchsweep gc`: delete runs, then the code packages and inputs no
remaining run uses, on the local store and on the S3 stores its runs point to. A dry run first: nothing is
deleted without `yes`.

Reused results never dangle: a reused task's files are copies in its own run (`batchsweep.planning.reuse`), so
deleting the run they came from leaves it whole. A deleted run's reuse-index entries go with it (best effort:
an entry left behind is harmless, the lookup reads the source's status before trusting it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from batchsweep.errors import RunStateError, SpecError
from batchsweep.runs.catalog import RunEntry, list_runs, load_run, open_run
from batchsweep.runs.run import Run
from batchsweep.spec.schema import parse_duration
from batchsweep.store.core import Store
from batchsweep.store.record import RunRecord, StoreAccess


@dataclass
class Plan:
    runs: list[Run] = field(default_factory=list)
    blobs: dict[str, list[str]] = field(default_factory=dict)  # store url -> unreferenced code/inputs keys
    stores: dict[str, Store] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"run   {r.id} ({r.record.created}, {r.n_tasks} tasks, {r.store.url})" for r in self.runs]
        for url, keys in self.blobs.items():
            out += [f"blob  {url}/{k}" for k in keys]
        return out


def _refs(record: RunRecord) -> set[str]:
    shas = [record.code_sha256, *(c.code_sha256 for c in record.code_changes)]
    refs = {Store.code_key(sha) for sha in shas if sha}
    return refs | {entry.key for entry in (record.inputs_map or {}).values()}


def _unreferenced(store: Store, leaving: set[str]) -> list[str]:
    """Code packages and staged inputs in the store that no run other than `leaving` refers to."""
    used: set[str] = set()
    for run_id in store.run_ids():
        if run_id in leaving:
            continue
        try:
            used |= _refs(RunRecord.of_run(run_id, store.run_info(run_id)))
        except Exception:  # noqa: BLE001 - a run we cannot read may use anything: keep everything
            return []
    return store.unused_shared_files(used)


def plan(local: Store, runs: Sequence[Run]) -> Plan:
    p = Plan(runs=list(runs))
    for run in runs:
        if run.poll().active:
            raise RunStateError(f"run {run.id} is still running; `batchsweep cancel {run.id}` first")
    by_store: dict[str, set[str]] = {}
    for run in runs:
        p.stores.setdefault(run.store.url, run.store)
        by_store.setdefault(run.store.url, set()).add(run.id)
    for url, leaving in by_store.items():
        blobs = _unreferenced(p.stores[url], leaving)
        if blobs:
            p.blobs[url] = blobs
    return p


def rm_plan(run_ids: Sequence[str], *, store: Store | str | None = None) -> Plan:
    local = store if isinstance(store, Store) else Store.open(store)
    return plan(local, [load_run(r, store=local) for r in run_ids])


def gc_plan(*, store: Store | str | None = None, keep_last: int | None = None,
            older_than: str | None = None) -> Plan:
    """Runs beyond the last `keep_last` of each sweep, or older than `older_than` (e.g. 30d), are deleted;
    with neither, no run is, and only code packages and inputs no run uses are."""
    local = store if isinstance(store, Store) else Store.open(store)
    age = _days(older_than) if older_than else None
    entries = [e for e in list_runs(store=local) if not e.damaged]
    by_sweep: dict[str, list[RunEntry]] = {}
    for entry in entries:
        by_sweep.setdefault(str(entry.name), []).append(entry)
    doomed = []
    now = time.time()
    for sweep_entries in by_sweep.values():
        for position, entry in enumerate(reversed(sweep_entries)):  # newest first
            kept_by_count = keep_last is not None and position < keep_last
            too_many = keep_last is not None and position >= keep_last
            too_old = age is not None and now - (entry.created_ts or now) > age
            if not kept_by_count and (too_many or too_old):
                doomed.append(entry.run_id)
    p = plan(local, [open_run(local, r) for r in doomed])
    p.stores.setdefault(local.url, local)
    for entry in entries:  # the S3 stores the local store's runs point to
        if entry.pointer and entry.store and entry.store not in p.stores:
            aws = entry.aws or StoreAccess()
            p.stores[entry.store] = Store.open(entry.store, aws_profile=aws.profile, aws_region=aws.region)
    for url, store_ in p.stores.items():
        if url not in p.blobs:
            blobs = _unreferenced(store_, {r.id for r in p.runs if r.store.url == url})
            if blobs:
                p.blobs[url] = blobs
    return p


def _days(text: str) -> float:
    text = text.strip()
    if text.endswith("d") and text[:-1].replace(".", "", 1).isdigit():
        return float(text[:-1]) * 86400
    seconds = parse_duration(text)
    if seconds is None:
        raise SpecError(f"--older-than {text}: write e.g. 30d, 12h or 90m")
    return seconds


def execute(p: Plan, *, local: Store | str | None = None, say: Callable[[str], None] = print) -> list[str]:
    """Delete what the plan lists; returns what could not be deleted (S3 refused it: one line each, also
    said)."""
    refused: list[str] = []
    local_store = local if isinstance(local, Store) else Store.open(local)
    for run in p.runs:
        _drop_index_entries(run)
        run.store.delete_run(run.id)
        if run.store.url != local_store.url:
            local_store.delete_run(run.id)  # the local pointer
        say(f"deleted run {run.id}")
    for url, keys in p.blobs.items():
        store = p.stores[url]
        kept: list[tuple[str, PermissionError]] = []
        for key in keys:
            try:
                store.backend.delete_prefix(key)
            # DeleteObjects named keys it kept (a SubmitPolicy user may not delete code/)
            except PermissionError as e:
                kept.append((key, e))
        if len(keys) > len(kept):
            say(f"deleted {len(keys) - len(kept)} unused code packages and inputs in {url}")
        if kept:
            first_key, first = kept[0]
            say(
                f"error: {len(kept)} unused code packages and inputs in {url} were not deleted "
                f"({getattr(first, 'code', 'refused')}, e.g. {first_key}); run gc as an identity that may "
                "delete them (the stack's admin)"
            )
            refused += [f"{url}/{key}: {why}" for key, why in kept]
    return refused


def _drop_index_entries(run: Run) -> None:
    try:
        tasks = run.tasks()
    except Exception:  # noqa: BLE001 - no tasks.jsonl: no entries to find
        return
    try:
        run.store.forget_successes(run.id, [(t.cache_key, t.index) for t in tasks])
    except Exception:  # noqa: BLE001 - a stale entry is harmless: the lookup checks the source's status
        return
