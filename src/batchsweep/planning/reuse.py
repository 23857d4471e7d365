"""Never compute the same task twice (docs/design.md §4.1).

Before a run is submitted, each task's content key (`batchsweep.planning.keys`) is looked up in the store's
index; every task with an earlier success under the same key gets that result copied into the new run (hard
links on a local store, server-side copies on S3), with `reused_from` in its status, and only the others are
submitted. Failed, timed-out, cancelled and lost tasks are never reused: an index entry is written only on
success, and the source's status.json is read again before it is trusted.

When only the `metrics:` rule changed, the reused task's metrics are read again from its stored output
(stdout.log or a kept output file) with the new rule, instead of running it again.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from batchsweep import metrics as metrics_mod
from batchsweep.metrics import METRICS_FILE
from batchsweep.model import State, Task, TaskStatus
from batchsweep.planning import keys
from batchsweep.store.core import TASK_FILES, OutsideStore, Store, TaskDir

_RUN_TIME = re.compile(r"-(\d{8}-\d{6})-[0-9a-f]{4}$")
_CANDIDATES = 3  # sources tried per key before a task is run again (a deleted or damaged source is skipped)


@dataclass(frozen=True)
class Source:
    run_id: str
    index: int
    status: TaskStatus
    rule: Any = METRICS_FILE  # the source run's `metrics:` rule

    @property
    def label(self) -> str:
        return f"{self.run_id}/{self.index}"


@dataclass
class Reuse:
    """Which tasks of a new run take an earlier result, and from where; why the others could not
    (`missed`)."""

    n_tasks: int
    found: dict[int, Source] = field(default_factory=dict)  # task index in the new run -> its earlier success
    missed: list[tuple[int, str]] = field(default_factory=list)  # (how many tasks, why) for those not reused
    earlier: str | None = None  # the newest earlier run of the sweep, which `missed` is told against

    @property
    def runs(self) -> set[str]:
        return {s.run_id for s in self.found.values()}

    def to_run(self, tasks: Sequence[Task]) -> list[Task]:
        return [t for t in tasks if t.index not in self.found]

    def account(self) -> dict[str, Any]:
        """run.json `reuse_account`: what `line` says, kept so `status` can say it again."""
        return {"reused": len(self.found), "of": self.n_tasks, "from": sorted(self.runs),
                "missed": [list(m) for m in self.missed]}

    def line(self, verb: str = "to run") -> str:
        return account_line(self.account(), verb)


def account_line(account: dict[str, Any], verb: str = "to run") -> str:
    """"reused 12 of 15 (from RUN); 3 to run: new params", "0 reused: train.py changed since RUN (+1 file:
    utils.py)" ("ran" instead of "to run" once the run has run), with control characters escaped (it names
    the project's files, and a store's run.json is anyone's)."""
    from batchsweep.text import printable

    return printable(_account_line(account, verb))


def _account_line(account: dict[str, Any], verb: str) -> str:
    try:  # run.json is read back from a store: a damaged account is not trusted for more than its numbers
        reused, n = int(account.get("reused") or 0), int(account.get("of") or 0)
        sources = [str(r) for r in account.get("from") or []]
        missed = [(int(c), str(w)) for c, w in account.get("missed") or []]
    except (TypeError, ValueError, AttributeError):
        return "reuse account unreadable (run.json reuse_account is damaged)"
    source = (
        f" (from {sources[0]})"
        if len(sources) == 1
        else f" (from {len(sources)} runs: {', '.join(sources[:3])}{', …' if len(sources) > 3 else ''})"
        if sources
        else ""
    )
    rest = n - reused
    if rest == 0:
        return f"reused {reused} of {n}{source}; nothing {verb}"
    why = missed[0][1] if len(missed) == 1 else ", ".join(f"{c} {w}" for c, w in missed)
    if reused == 0 and len(missed) == 1:
        return f"0 reused: {why}"
    return f"reused {reused} of {n}{source}; {rest} {verb}" + (f": {why}" if why else "")


def explain_misses(
    store: Store, tasks: Sequence[Task], reuse: Reuse, info: dict[str, Any]
) -> list[tuple[int, str]]:
    """Why each task not reused could not be, against the newest earlier run of the same sweep in the store
    (`info` is the new run's run.json): new params, the code, packages or environment changed since (named),
    its inputs changed, or it never succeeded there. Counted per reason, the most common first."""
    from collections import Counter

    missed = [t for t in tasks if t.index not in reuse.found]
    if not missed:
        return []
    name = str(info.get("name") or "")
    same_sweep = re.compile(re.escape(name) + r"-\d{8}-\d{6}-[0-9a-f]{4}")
    try:
        earlier = sorted(
            (r for r in store.run_ids() if same_sweep.fullmatch(r)), key=lambda r: _newest_first((r, 0))
        )
        if not earlier:
            return [(len(missed), f"no earlier run of {name} in this store")]
        # Runs started in the same second have the same time in their ids: their run.json says which came
        # last.
        tied = [r for r in earlier if _newest_first((r, 0))[0] == _newest_first((earlier[-1], 0))[0]]
        infos = {r: store.run_info(r) for r in tied}
        ref = max(tied, key=lambda r: float(infos[r].get("created_ts") or 0))
        reuse.earlier, ref_info = ref, infos[ref]
        ref_tasks = {keys.canonical(t.params): t for t in store.iter_tasks(ref)}
    except Exception:  # noqa: BLE001 - an unreadable earlier run only makes the account vaguer
        return [(len(missed), f"no readable earlier run of {name}")]
    whole = run_change(ref, ref_info, info)
    counts: Counter[str] = Counter()
    for t in missed:
        old = ref_tasks.get(keys.canonical(t.params))
        if old is None:
            counts["new params"] += 1
        elif not t.cache_key:
            counts["not keyed (an input could not be identified)"] += 1
        elif whole is not None:
            counts[whole] += 1
        elif old.cache_key == t.cache_key:
            counts[f"did not succeed in {ref}"] += 1
        elif t.inputs:
            counts[f"its inputs changed since {ref}"] += 1
        else:
            counts[f"key changed since {ref}"] += 1
    return [(count, why) for why, count in counts.most_common()]


def run_change(ref: str, old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """What differs between an earlier run and a new one for every task's key, in words; None when nothing
    does."""
    if old.get("key_common") == new.get("key_common"):
        return None
    old_code, new_code = old.get("code_identity"), new.get("code_identity")
    if not old_code or old_code.get("v") != (new_code or {}).get("v"):
        return f"{ref} was keyed by an older batchsweep (its code identity is not comparable)"
    files, packages = keys.code_changes(old_code, new_code)
    script = new.get("script_name")
    files.sort(key=lambda f: f.split(" ")[0] != script)  # the script first
    parts = []
    if files:
        more = files[1:]
        parts.append(
            f"{files[0]} changed since {ref}"
            + (
                f" (+{len(more)} file{'s' if len(more) != 1 else ''}: "
                f"{', '.join(more[:5])}{', …' if len(more) > 5 else ''})"
                if more
                else ""
            )
        )
    if packages:
        parts.append(
            ", ".join(packages[:5])
            + (", …" if len(packages) > 5 else "")
            + ("" if files else f" since {ref}")
        )
    for part, label in (("key_env", "environment"), ("key_what", "spec")):
        a, b = old.get(part) or {}, new.get(part) or {}
        changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        parts += [f"{label} {k}: {a.get(k)!r} → {b.get(k)!r}" if not isinstance(a.get(k), dict) and
                  not isinstance(b.get(k), dict) else f"{label} {k} changed" for k in changed]
    return "; ".join(parts) if parts else f"the key changed since {ref}"


def _newest_first(entry: tuple[str, int]) -> tuple[str, str, int]:
    m = _RUN_TIME.search(entry[0])
    return (m.group(1) if m else "", entry[0], -entry[1])


def lookup(store: Store, tasks: Sequence[Task], *, metrics_rule: str | dict[str, Any] = METRICS_FILE,
           keeps_everything: bool = True) -> Reuse:
    """The earlier succeeded task for each task whose key the store has seen succeed, and whose metrics under
    `metrics_rule` can be read from what it stored (`keeps_everything`: the sweep has no `outputs:` globs)."""
    entries = store.index_entries(t.cache_key for t in tasks)
    candidates = {
        key: found if len(found) == 1 else sorted(found, key=_newest_first, reverse=True)[:_CANDIDATES]
        for key, found in entries.items()
    }
    chosen: dict[str, Source] = {}
    rules: dict[str, Any] = {}
    # per source run: its rule is the new one, so every success of it is reusable
    same_rule: dict[str, bool] = {}
    wanted = keys.canonical(metrics_rule)
    for attempt in range(_CANDIDATES):
        ask = [(key, c[attempt]) for key, c in candidates.items() if key not in chosen and len(c) > attempt]
        if not ask:
            break
        statuses = store.read_task_statuses([where for _, where in ask])
        for (key, (run_id, index)), status in zip(ask, statuses):
            if status is None or status.state is not State.SUCCEEDED:
                continue
            if run_id not in rules:
                rules[run_id] = _metrics_rule(store, run_id)
                same_rule[run_id] = rules[run_id] is not None and keys.canonical(rules[run_id]) == wanted
            if same_rule[run_id] or rereadable(
                rules[run_id], metrics_rule, status, keeps_everything=keeps_everything
            ):
                chosen[key] = Source(run_id, index, status, rules[run_id])
    return Reuse(len(tasks), {t.index: chosen[t.cache_key] for t in tasks if t.cache_key in chosen})


def copy_results(store: Store, run_id: str, tasks: Sequence[Task], reuse: Reuse, *,
                 metrics_rule: str | dict[str, Any]) -> None:
    """Put each reused task's files into the new run, its status (with `reused_from`) last; then the index
    entries of those whose status was written (one append per index file)."""
    by_index = {t.index: t for t in tasks}

    def one(index: int) -> int | None:
        source = reuse.found[index]
        try:
            return _copy_one(store, run_id, index, source, metrics_rule)
        except (OutsideStore, ValueError) as e:  # a store someone else wrote, or a damaged source
            store.backend.delete_prefix(store.task_prefix(run_id, index))
            store.warn(
                f"task {index}: not reused from run {source.run_id} task {source.index} ({e}); it runs again"
            )
            return None

    with ThreadPoolExecutor(max_workers=8 if store.is_local else 32) as pool:
        done = [i for i in pool.map(one, sorted(reuse.found)) if i is not None]
    for index in set(reuse.found) - set(done):
        del reuse.found[index]
    store.record_successes([(by_index[i].cache_key, run_id, i) for i in done])


def _copy_one(
    store: Store, run_id: str, index: int, source: Source, metrics_rule: str | dict[str, Any]
) -> int:
    """One reused task's files, then its status."""
    same_rule = keys.canonical(source.rule) == keys.canonical(metrics_rule)
    names = [*(n for n in TASK_FILES if same_rule or n != TaskDir.METRICS), TaskDir.SERIES]
    copies = [(n, store.task_file_key(source.run_id, source.index, n), store.task_file_key(run_id, index, n))
              for n in names]
    copies += [(TaskDir.OUTPUTS, store.task_output_key(source.run_id, source.index, o),
                store.task_output_key(run_id, index, o)) for o in source.status.outputs]
    for name, source_key, key in copies:
        try:
            store.backend.copy(source_key, key)
        except FileNotFoundError:
            if name == TaskDir.METRICS:  # a compacted run or an AWS child's summary holds them in a pack
                packed = store.read_metrics(source.run_id, [source.index]).get(source.index)
                if packed is not None:
                    store.write_json(key, packed)
            elif name in (TaskDir.STDOUT, TaskDir.STDERR):  # a compacted run holds them in its log pack
                log = store.read_packed_log(source.run_id, source.index, stderr=name == TaskDir.STDERR)
                if log:
                    store.backend.write_bytes(key, log)
            continue  # a task need not write metrics or logs
    status = replace(source.status, index=index, reused_from=source.label)
    if not same_rule:
        found = _reread_metrics(store, source, metrics_rule)
        if found:
            store.write_json(store.task_metrics_key(run_id, index), found)
        status = replace(status, metrics_missing=None if found else metrics_mod.describe(metrics_rule))
    store.write_status(run_id, status)
    return index


def rule_of(spec: dict[str, Any]) -> Any:
    """The `metrics:` rule of a run.json spec snapshot, as `lookup` compares rules."""
    rule = spec.get("metrics") or METRICS_FILE
    return {k: v for k, v in rule.items() if v is not None} if isinstance(rule, dict) else rule


def _metrics_rule(store: Store, run_id: str) -> Any:
    try:
        from batchsweep.store.record import RunRecord

        return rule_of(RunRecord.of_run(run_id, store.run_info(run_id)).spec_json())
    except Exception:  # noqa: BLE001 - a source whose run.json is unreadable is not reused
        return None


def rereadable(
    source_rule: Any, rule: str | dict[str, Any], status: TaskStatus, *, keeps_everything: bool
) -> bool:
    """Whether the metrics the new rule would have found can be told from what the source run stored."""
    if source_rule is None:
        return False
    if keys.canonical(source_rule) == keys.canonical(rule):
        return True
    if metrics_mod.is_mlflow(source_rule) or metrics_mod.is_mlflow(rule):
        return False  # MLflow's store is read in the task's working directory, which is gone: run it again
    wanted = rule if isinstance(rule, str) else METRICS_FILE  # a stream rule also reads the default file
    if wanted == source_rule or (wanted == METRICS_FILE and isinstance(source_rule, dict)):
        return True  # in the stored metrics.json (less what the old stream rule printed)
    return wanted in status.outputs or keeps_everything  # kept, or (everything being kept) never written


def _reread_metrics(store: Store, source: Source, rule: str | dict[str, Any]) -> dict[str, Any] | None:
    """The metrics the new rule finds in the source's stored output: its kept files and its logs."""
    where = (source.run_id, source.index)

    def read(key: str) -> bytes | None:
        try:
            return store.backend.read_bytes(key)
        except FileNotFoundError:
            return None

    def as_dict(raw: bytes | None) -> dict[str, Any]:
        try:
            value = json.loads(raw) if raw is not None else None
        except ValueError:
            value = None
        return metrics_mod.clean(value) if isinstance(value, dict) else {}

    def printed(stream_rule: dict[str, Any]) -> dict[str, Any]:
        stream, pattern = metrics_mod.rule_stream(stream_rule)
        logs = [io.BytesIO(raw) for raw in (store.read_task_log(*where, stderr=s == "stderr") for s in
                (("stdout", "stderr") if stream == "output" else (stream,))) if raw is not None]
        return metrics_mod.from_streams(logs, pattern, match=stream_rule.get("match") or "last") or {}

    old = source.rule
    wanted = rule if isinstance(rule, str) else METRICS_FILE
    if wanted == old:
        file_part = as_dict(read(store.task_metrics_key(*where)))
    elif wanted == METRICS_FILE and isinstance(old, dict):
        old_printed = printed(old)  # the old metrics.json merged the file with what the old rule printed
        file_part = {
            k: v for k, v in as_dict(read(store.task_metrics_key(*where))).items() if k not in old_printed
        }
    else:
        file_part = (
            as_dict(read(store.task_output_key(*where, wanted))) if wanted in source.status.outputs else {}
        )
    found = {**file_part, **(printed(rule) if isinstance(rule, dict) else {})}
    return found or None
