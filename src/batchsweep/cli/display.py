"""What the CLI prints about a plan and a run's outcome: the plan and its tasks, the estimate, the outcome
line, the runs list (tables: cli/tables.py, status: cli/statusview.py)."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from batchsweep.cli.statusview import no_metrics_line
from batchsweep.cli.tables import fit_table, make_console
from batchsweep.model import OK_STATE_NAMES, State, TaskStatus
from batchsweep.text import cell, duration, printable, state_counts

if TYPE_CHECKING:

    from batchsweep.planning.plan import Plan
    from batchsweep.runs.catalog import RunEntry
    from batchsweep.runs.estimate import SweepEstimate
    from batchsweep.runs.run import Run

PLAN_ROWS = 20


def print_plan(p: Plan, estimate: SweepEstimate | None = None) -> None:
    console = make_console()
    r = p.spec.resources
    if p.spec.search is not None:
        _print_search_plan(p, console)
        count = f"{p.spec.search.trials} tasks (one per trial)"
    else:
        names = list(p.record.param_names)
        staged = ["inputs"] if any(t.inputs for t in p.tasks) else []  # no empty column for a sweep without
        rows: list[list[Any]] = [
            [t.index, *(t.params.get(n) for n in names), *(", ".join(t.inputs) for _ in staged)]
            for t in p.tasks
        ]
        shown = (
            rows
            if len(rows) <= PLAN_ROWS
            else rows[: PLAN_ROWS - 3] + [["…"] + [""] * (len(names) + len(staged))] + rows[-2:]
        )
        table, dropped = fit_table(["task", *names, *staged], shown,
                                   width=console.width if console.is_terminal else None)
        console.print(table)
        if dropped:
            console.print(
                f"not shown, too wide for {console.width} columns: {', '.join(dropped)}", markup=False
            )
        console.print(f"command lines (in {p.record.code_dir}):", markup=False)
        listed = p.tasks if len(p.tasks) <= PLAN_ROWS else [*p.tasks[: PLAN_ROWS - 3], None, *p.tasks[-2:]]
        # commands start in one column
        digits = max((len(str(t.index)) for t in listed if t is not None), default=1)
        for task in listed:
            console.print(
                "  …" if task is None else f"  {task.index:>{digits}}  {plan_command(p, task)}", markup=False
            )
        count = f"{len(p.tasks)} task{'' if len(p.tasks) == 1 else 's'}"
    console.print(
        f"{count} · backend {p.spec.backend} · {r.vcpus:g} vCPU, {r.memory_mib} MiB each · timeout "
        f"{duration(p.spec.timeout) if p.spec.timeout else 'none'} · retries {p.spec.retries} · dry run: "
        "nothing was started"
    )
    if not p.engine.live_code:  # the tasks run the code package shipped at the start
        _print_package(p, console)
    if estimate is not None:
        console.print()
        print_estimate(estimate, console=console)


def print_key(p: Plan) -> None:
    """What each task's content key covers (README: "What a task's key covers"), for `batchsweep explain`."""
    from batchsweep import registry
    from batchsweep.planning import keys

    print_ = make_console().print
    identity = keys.code_identity(p.spec, survey=True)
    how = ("every file of the folder (code.files: all)" if p.spec.code.files == "all" else
           "every file of the folder (the script is not Python)" if identity.mode == "all" else
           "the script, the project files it imports" + (" and code.files" if p.spec.code.files else ""))
    print_(f"code      {identity.hash[:12]} · {how} · in {p.record.code_dir}", markup=False)
    from rich.cells import cell_len

    # padded in terminal cells: a CJK or emoji file name takes two a character; a name's control
    # characters shown escaped (a cloned project's file names are anyone's)
    names = {rel: printable(rel) for rel in identity.files}
    width = max((cell_len(name) for name in names.values()), default=0)
    for rel, name in names.items():
        why = printable(identity.why.get(rel, ""))
        print_(f"  {name}{' ' * (width - cell_len(name))}  {why}", markup=False)
    if not registry.get_engine(p.spec.backend).local_python:
        print_("packages  the task image's (its URI is keyed)", markup=False)
    else:
        print_("packages  " + (", ".join(f"{name} {v}" for name, v in identity.packages.items())
                               or "none imported from outside the standard library"), markup=False)
    env = p.record.key_env or {}
    print_(
        "runs on   "
        + " · ".join(f"{k} {v}" for k, v in env.items() if k != "env" and v)
        + " · env "
        + (", ".join(f"{k}={v}" for k, v in sorted((env.get("env") or {}).items())) or "none"),
        markup=False,
    )
    what = p.record.key_what or {}
    print_(
        "what      " + " · ".join(f"{k} {v}" for k, v in what.items() if v not in (None, [], {}, 0)),
        markup=False,
    )
    print_(
        "inputs    "
        + (
            ", ".join(str(i if isinstance(i, str) else getattr(i, "src", i)) for i in p.spec.inputs)
            + " (each task's, by content)"
            if p.spec.inputs
            else "none"
        ),
        markup=False,
    )
    print_("params    each task's resolved params", markup=False)
    if identity.left_out:
        by_why: dict[str, list[str]] = {}
        for rel, why in identity.left_out.items():
            by_why.setdefault(why, []).append(rel)
        print_(f"not code  {len(identity.left_out)} file(s) of the folder never change a key:", markup=False)
        for why, rels in sorted(by_why.items()):
            print_(f"  {', '.join(rels[:6])}{f' (+{len(rels) - 6} more)' if len(rels) > 6 else ''}: {why}",
                   markup=False)
        if p.spec.code.files != "all":
            print_(
                "  a file the script reads but does not import counts once listed: code: {files: [NAME, "
                "...]}",
                markup=False,
            )
    print_(
        "not keyed timeout, retries, max_parallel, warm, vCPUs, memory, metrics: (re-read instead)",
        markup=False,
    )


def _print_search_plan(p: Plan, console: Any) -> None:
    """A search has no task list up front: what it will do, round by round, over which space."""
    search = p.spec.search
    assert search is not None
    batch = p.record.search.batch if p.record.search else search.batch or 1
    rounds = math.ceil(search.trials / batch)
    console.print(
        f"search   {search.sampler} sampler · {search.trials} trials in {rounds} rounds of up to {batch} "
        f"(batch) · {search.direction} {search.metric} · seed {search.seed}",
        markup=False,
    )
    width = max(len(n) for n in search.space)
    for i, (name, dist) in enumerate(search.space.items()):
        text = dist if isinstance(dist, str) else "choice(" + ", ".join(map(str, dist)) + ")"
        console.print(f"{'space' if i == 0 else '':9}{name:<{width}}  {text}", markup=False)
    fixed = (p.spec.params.fixed if p.spec.params else {}) or {}
    if fixed:
        console.print(
            "fixed    " + printable(" ".join(f"{k}={cell(v)}" for k, v in fixed.items())), markup=False
        )
    console.print(
        f"each task gets `trial` (0..{search.trials - 1}) and `round` (0..{rounds - 1}) with the proposed "
        "values; Optuna proposes each round from the results of the ones before",
        markup=False,
    )


def _print_package(p: Plan, console: Any) -> None:
    from pathlib import Path

    from batchsweep.aws import codepkg, credentials

    code_dir = p.record.code_dir
    contents = codepkg.survey(Path(code_dir), exclude=p.spec.code.exclude, include=p.spec.code.include)
    console.print(f"code package: {contents.summary()} from {code_dir}", markup=False, highlight=False)
    names = sorted([*contents.sizes, *contents.links])
    console.print(
        f"packs: {', '.join(names[:40])}{f' ... ({len(names) - 40} more)' if len(names) > 40 else ''}",
        markup=False,
        highlight=False,
    )
    left_out = contents.left_out_line()
    if left_out:
        console.print(f"left out: {left_out}", markup=False, highlight=False)
    if contents.total > p.spec.code.max_mib * 2**20:  # refused whole for its size: its files are not read
        console.print(f"refused: over code.max_mib ({p.spec.code.max_mib:g} MiB); leave big files out with "
                      "code.exclude or `inputs:`, or raise code.max_mib", markup=False, highlight=False)
        return
    for rel, line, what in credentials.scan(Path(code_dir), contents.scanned()):
        console.print(
            f"refused: {rel} line {line} holds what looks like {what} (code.exclude it, or code.include "
            "it if it is no credential)",
            markup=False,
            highlight=False,
        )


def plan_command(p: Plan, task: Any) -> str:
    from batchsweep.task.worker import context_from_run, shown_command

    return printable(shown_command(context_from_run(p.record), task))  # a param value may hold escapes


def print_estimate(estimate: SweepEstimate, *, console: Any = None) -> None:
    console = console or make_console()
    for line in estimate.lines():
        console.print(line, markup=False)


def _noting_successes(statuses: Iterable[TaskStatus], into: list[int]) -> Iterator[TaskStatus]:
    for s in statuses:
        if s.state is State.SUCCEEDED:
            into.append(s.index)
        yield s


def _told_against_a_run(account: dict[str, Any]) -> bool:
    """Whether a reuse account compares with an earlier run (a first run's has nothing to say after it
    ran)."""
    return not any(isinstance(m, list) and len(m) == 2 and str(m[1]).startswith("no earlier run")
                   for m in account.get("missed") or [])


def print_outcome(run: Run) -> None:
    counts, _ = run.counts()
    summary = state_counts(counts)
    print(f"{run.id}: {summary}", file=sys.stderr)
    account = run.record.reuse_account
    if isinstance(account, dict) and (
        account.get("reused") or run.record.reused or _told_against_a_run(account)
    ):
        from batchsweep.planning.reuse import account_line

        print(account_line(account, "ran"), file=sys.stderr)
    succeeded: list[int] = []
    line = no_metrics_line(run, _noting_successes(run.store.iter_statuses(run.id, run.n_tasks), succeeded))
    if line:  # (100,000 statuses are never all held: only the succeeded tasks' indices are kept)
        print(line, file=sys.stderr)
    from batchsweep.report.results import identical_metrics

    same = identical_metrics(run, succeeded)
    if same:
        print(same, file=sys.stderr)
    if sum(counts.get(k, 0) for k in OK_STATE_NAMES) != run.n_tasks:
        print(
            f"see why: batchsweep status {run.id} · rerun what failed: batchsweep resume {run.id}",
            file=sys.stderr,
        )
    print(f"results: batchsweep results {run.id}", file=sys.stderr)


def print_runs(entries: list[RunEntry], *, store: str | None) -> None:
    from batchsweep.runs.catalog import load_run

    rows: list[list[Any]] = []
    for entry in entries:
        if entry.damaged:
            rows.append([entry.run_id, "", "", "", "", f"damaged run.json ({entry.damaged})"])
            continue
        n_tasks = entry.n_tasks
        try:
            run = load_run(entry.run_id, store=store)
            counts, progress = run.counts()
            n_tasks = run.n_tasks  # a search's pointer was written before its rounds
            state = state_counts(counts)
        except Exception as e:  # noqa: BLE001 - one unreadable run must not hide the others
            state = f"unreadable: {e}"
        created = (
            datetime.fromisoformat(entry.created).astimezone().strftime("%Y-%m-%d %H:%M")
            if entry.created
            else ""
        )
        rows.append([entry.run_id, entry.name, entry.backend, created, n_tasks, state])
    if not rows:
        print("no runs yet; start one with: batchsweep run sweep.yaml")
        return
    console = make_console()
    table, _ = fit_table(
        ["run", "sweep", "backend", "created", "tasks", "states"],
        rows,
        wrap=("states",),
        text_cap=64,
        width=console.width if console.is_terminal else None,
        keep=("run", "states"),
    )
    console.print(table)
