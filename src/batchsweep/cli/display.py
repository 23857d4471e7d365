"""What the CLI prints: tables of tasks, runs, statuses and results (rich on a terminal, plain text otherwise)."""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from batchsweep.clock import SYSTEM, Clock
from batchsweep.model import LOST_REASON, OK_STATE_NAMES, OWN_PARAMS, State, TaskStatus
from batchsweep.text import cell, duration, is_missing, printable, state_counts

if TYPE_CHECKING:
    import pandas as pd

    from batchsweep.planning.plan import Plan
    from batchsweep.runs.catalog import RunEntry
    from batchsweep.runs.estimate import SweepEstimate
    from batchsweep.runs.run import Run
    from batchsweep.spec.schema import Stop

PLAN_ROWS = 20


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    terminal = (sys.stderr if stderr else sys.stdout).isatty()
    return Console(stderr=stderr, width=None if terminal else 200, soft_wrap=not terminal, highlight=False)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.1f}" if value.is_integer() and abs(value) < 1e6 else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


# -- tables that fit the terminal ---------------------------------------------------------------------
TEXT_CAP = 28  # a text cell longer than this is shortened with "…" (a number never is)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or (
        hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iuf")


def fit_table(columns: list[str], rows: list[list[Any]], *, width: int | None, title: str | None = None,
              keep: Sequence[str] = (), wrap: Sequence[str] = (), text_cap: int = TEXT_CAP,
              fmt: Callable[[Any], str] | None = None) -> tuple[Any, list[str]]:
    """A rich table of the columns that fit in `width` (None: all of them), in order, and the names left out.

    Numbers are never cut: a column that does not fit is left out whole (the caller says so). Text cells
    longer than `text_cap` end in "…", except in `wrap` columns, which wrap onto more lines and take the
    width left over. Columns in `keep` are shown whatever it costs the others."""
    from rich import box
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    texts = [[printable((fmt or cell)(v)) for v in row] for row in rows]
    columns = [printable(str(c)) for c in columns]
    numeric = [all(_is_number(row[j]) or is_missing(row[j]) for row in rows) for j in range(len(columns))]
    if width is not None:
        for row in texts:
            for j, t in enumerate(row):
                if not numeric[j] and columns[j] not in wrap and cell_len(t) > text_cap:
                    row[j] = t[: text_cap - 1] + "…"
    need = [max([cell_len(str(c)), *(cell_len(row[j]) for row in texts)]) + 2 for j, c in enumerate(columns)]
    if width is not None:
        need = [min(n, 22) if columns[j] in wrap else n for j, n in enumerate(need)]
    shown = list(range(len(columns)))
    if width is not None:
        kept = [j for j, c in enumerate(columns) if c in keep or j == 0]
        used = sum(need[j] + 1 for j in kept) - 1
        shown = []
        for j in range(len(columns)):
            if j in kept or used + need[j] + 1 <= width:
                shown.append(j)
                used += 0 if j in kept else need[j] + 1
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", show_edge=False, highlight=False)
    for j in shown:
        wraps = columns[j] in wrap
        table.add_column(str(columns[j]), justify="right" if numeric[j] else "left", no_wrap=not wraps,
                         min_width=need[j] - 2, overflow="fold" if wraps or numeric[j] else "ellipsis")
    for row in texts:
        # Text, not markup: a task's output or a param value may hold `[...]` (e.g. `[/x]`, `[bold]`).
        table.add_row(*(Text(row[j]) for j in shown))
    return table, [str(columns[j]) for j in range(len(columns)) if j not in shown]


def print_plan(p: Plan, estimate: SweepEstimate | None = None) -> None:
    console = _console()
    r = p.spec.resources
    if p.spec.search is not None:
        _print_search_plan(p, console)
        count = f"{p.spec.search.trials} tasks (one per trial)"
    else:
        names = list(p.record.param_names)
        rows: list[list[Any]] = [[t.index, *(t.params.get(n) for n in names), ", ".join(t.inputs)] for t in p.tasks]
        shown = rows if len(rows) <= PLAN_ROWS else rows[: PLAN_ROWS - 3] + [["…"] + [""] * (len(names) + 1)] + rows[-2:]
        table, dropped = fit_table(["task", *names, "inputs"], shown, fmt=_fmt,
                                   width=console.width if console.is_terminal else None)
        console.print(table)
        if dropped:
            console.print(f"not shown, too wide for {console.width} columns: {', '.join(dropped)}", markup=False)
        console.print(f"command lines (in {p.record.code_dir}):", markup=False)
        listed = p.tasks if len(p.tasks) <= PLAN_ROWS else [*p.tasks[: PLAN_ROWS - 3], None, *p.tasks[-2:]]
        digits = max((len(str(t.index)) for t in listed if t is not None), default=1)  # commands start in one column
        for task in listed:
            console.print("  …" if task is None else f"  {task.index:>{digits}}  {plan_command(p, task)}", markup=False)
        count = f"{len(p.tasks)} tasks"
    console.print(
        f"{count} · backend {p.spec.backend} · {r.vcpus:g} vCPU, {r.memory_mib} MiB each · "
        f"timeout {duration(p.spec.timeout) if p.spec.timeout else 'none'} · retries {p.spec.retries} · dry run: nothing was started"
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

    print_ = _console().print
    identity = keys.code_identity(p.spec, survey=True)
    how = ("every file of the folder (code.files: all)" if p.spec.code.files == "all" else
           "every file of the folder (the script is not Python)" if identity.mode == "all" else
           "the script, the project files it imports" + (" and code.files" if p.spec.code.files else ""))
    print_(f"code      {identity.hash[:12]} · {how} · in {p.record.code_dir}", markup=False)
    width = max((len(rel) for rel in identity.files), default=0)
    for rel in identity.files:
        print_(f"  {rel.ljust(width)}  {identity.why.get(rel, '')}", markup=False)
    if not registry.get_engine(p.spec.backend).local_python:
        print_("packages  the task image's (its URI is keyed)", markup=False)
    else:
        print_("packages  " + (", ".join(f"{name} {v}" for name, v in identity.packages.items())
                               or "none imported from outside the standard library"), markup=False)
    env = p.record.key_env or {}
    print_("runs on   " + " · ".join(f"{k} {v}" for k, v in env.items() if k != "env" and v) + " · env "
           + (", ".join(f"{k}={v}" for k, v in sorted((env.get("env") or {}).items())) or "none"), markup=False)
    what = p.record.key_what or {}
    print_("what      " + " · ".join(f"{k} {v}" for k, v in what.items() if v not in (None, [], {}, 0)), markup=False)
    print_("inputs    " + (", ".join(str(i if isinstance(i, str) else getattr(i, "src", i)) for i in p.spec.inputs)
                           + " (each task's, by content)" if p.spec.inputs else "none"), markup=False)
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
            print_("  a file the script reads but does not import counts once listed: code: {files: [NAME, ...]}",
                   markup=False)
    print_("not keyed timeout, retries, max_parallel, warm, vCPUs, memory, metrics: (re-read instead)", markup=False)


def _print_search_plan(p: Plan, console: Any) -> None:
    """A search has no task list up front: what it will do, round by round, over which space."""
    search = p.spec.search
    assert search is not None
    batch = p.record.search.batch if p.record.search else search.batch or 1
    rounds = math.ceil(search.trials / batch)
    console.print(f"search   {search.sampler} sampler · {search.trials} trials in {rounds} rounds of up to {batch} "
                  f"(batch) · {search.direction} {search.metric} · seed {search.seed}", markup=False)
    width = max(len(n) for n in search.space)
    for i, (name, dist) in enumerate(search.space.items()):
        text = dist if isinstance(dist, str) else "choice(" + ", ".join(map(str, dist)) + ")"
        console.print(f"{'space' if i == 0 else '':9}{name:<{width}}  {text}", markup=False)
    fixed = (p.spec.params.fixed if p.spec.params else {}) or {}
    if fixed:
        console.print("fixed    " + printable(" ".join(f"{k}={cell(v)}" for k, v in fixed.items())), markup=False)
    console.print(f"each task gets `trial` (0..{search.trials - 1}) and `round` (0..{rounds - 1}) with the proposed "
                  "values; Optuna proposes each round from the results of the ones before", markup=False)


def _print_package(p: Plan, console: Any) -> None:
    from pathlib import Path

    from batchsweep.aws import codepkg

    code_dir = p.record.code_dir
    contents = codepkg.survey(Path(code_dir), exclude=p.spec.code.exclude, include=p.spec.code.include)
    console.print(f"code package: {contents.summary()} from {code_dir}", markup=False, highlight=False)
    names = sorted([*contents.sizes, *contents.links])
    console.print(f"packs: {', '.join(names[:40])}{f' ... ({len(names) - 40} more)' if len(names) > 40 else ''}",
                  markup=False, highlight=False)
    left_out = contents.left_out_line()
    if left_out:
        console.print(f"left out: {left_out}", markup=False, highlight=False)
    for rel, line, what in codepkg.scan(Path(code_dir), contents):
        console.print(f"refused: {rel} line {line} holds what looks like {what} (code.exclude it, or code.include "
                      "it if it is no credential)", markup=False, highlight=False)


def plan_command(p: Plan, task: Any) -> str:
    from batchsweep.task.worker import context_from_run, shown_command

    return printable(shown_command(context_from_run(p.record), task))  # a param value may hold escapes


def no_metrics_line(run: Run, statuses: Iterable[TaskStatus]) -> str | None:
    """`N tasks succeeded without metrics — …`, or None when every success yielded a metric. The statuses are
    gone through once, none kept (`print_outcome` streams them)."""
    n, first = 0, None
    for s in statuses:
        if s.state is State.SUCCEEDED and s.metrics_missing:
            n += 1
            if first is None or s.index < first.index:
                first = s
    if first is None:
        return None
    return (f"{n} task{'s' if n > 1 else ''} succeeded without metrics — {first.metrics_missing}; "
            f"their output is in `batchsweep logs {run.id} {first.index}` (add --stderr for stderr)")


def print_estimate(estimate: SweepEstimate, *, console: Any = None) -> None:
    console = console or _console()
    for line in estimate.lines():
        console.print(line, markup=False)


def _noting_successes(statuses: Iterable[TaskStatus], into: list[int]) -> Iterator[TaskStatus]:
    for s in statuses:
        if s.state is State.SUCCEEDED:
            into.append(s.index)
        yield s


def _told_against_a_run(account: dict[str, Any]) -> bool:
    """Whether a reuse account compares with an earlier run (a first run's has nothing to say after it ran)."""
    return not any(isinstance(m, list) and len(m) == 2 and str(m[1]).startswith("no earlier run")
                   for m in account.get("missed") or [])


def print_outcome(run: Run) -> None:
    counts, _ = run.counts()
    summary = state_counts(counts)
    print(f"{run.id}: {summary}", file=sys.stderr)
    account = run.record.reuse_account
    if isinstance(account, dict) and (account.get("reused") or run.record.reused or _told_against_a_run(account)):
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
        print(f"see why: batchsweep status {run.id} · rerun what failed: batchsweep resume {run.id}", file=sys.stderr)
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
        created = datetime.fromisoformat(entry.created).astimezone().strftime("%Y-%m-%d %H:%M") if entry.created else ""
        rows.append([entry.run_id, entry.name, entry.backend, created, n_tasks, state])
    if not rows:
        print("no runs yet; start one with: batchsweep run sweep.yaml")
        return
    console = _console()
    table, _ = fit_table(["run", "sweep", "backend", "created", "tasks", "states"], rows, wrap=("states",), text_cap=64,
                         width=console.width if console.is_terminal else None, keep=("run", "states"))
    console.print(table)


def run_state(run: Run, counts: Counter[str], active: bool) -> str:
    if active:
        return "running"
    if run.record.cancelled:
        return "cancelled"
    if counts.get("pending"):
        return "interrupted (resumable)"
    return "finished"


def warm_line(statuses: Iterable[TaskStatus]) -> str | None:
    """"4 of 6 ran warm; 2 cold: the spec says warm: false" over the tasks this run started (reused ones and
    those of a batchsweep before `warm` was recorded left out); None when there are none."""
    started = [s for s in statuses if s.warm is not None and not s.reused_from]
    if not started:
        return None
    warm = sum(1 for s in started if s.warm)
    why = Counter(s.cold_why or "not recorded" for s in started if not s.warm)
    cold = "; ".join(f"{n} cold: {reason}" for reason, n in why.most_common(3))
    return f"{warm} of {len(started)} ran warm" + (f"; {cold}" if cold else "")


def print_status(run: Run) -> None:
    statuses, progress = run.snapshot()
    states = run.states_from(statuses, progress)
    counts = Counter(s.value for s in states.values())
    console = _console()
    console.print(f"run      {run.id}")
    record = run.record
    console.print(f"sweep    {run.name} · backend {record.backend} · created {record.created}")
    console.print(f"state    {run_state(run, counts, progress.active)}")
    from batchsweep.store.provenance import describe

    console.print(f"made by  {describe(record.provenance)}", markup=False)
    console.print("tasks    " + state_counts(counts) + f" (of {run.n_tasks})")
    account = run.record.reuse_account
    if isinstance(account, dict):
        from batchsweep.planning.reuse import account_line

        console.print(f"reuse    {account_line(account, 'to run' if progress.active else 'ran')}", markup=False)
    line = warm_line(statuses.values())
    if line:
        console.print(f"warm     {line}", markup=False)
    durations = [s.duration_s for s in statuses.values() if s.duration_s is not None]
    if durations:
        console.print(f"compute  {duration(sum(durations))} of task time (sum of task durations), "
                      f"longest {duration(max(durations))}")
        from batchsweep.report.cost import container_seconds, cost_summary, run_cost

        cost = run_cost(record, durations, containers_s=container_seconds(
            (s.worker, s.started_at, s.ended_at) for s in statuses.values()))
        if cost is not None:
            console.print(f"cost     {cost_summary(cost)}: an estimate from a price table, not a bill; "
                          f"its assumptions are in `batchsweep report {run.id}`", markup=False)
    if not progress.active:
        from batchsweep.report.cost import run_right_size

        suggestion = run_right_size(record, statuses.values())
        if suggestion is not None:
            console.print(f"size     {suggestion.line()}", markup=False)
    stop = record.spec.stop
    if stop:
        console.print("stopping " + stop_line(run, statuses, stop), markup=False)
    if progress.units:
        console.print("engine   " + ", ".join(f"{n} {s}" for s, n in sorted(progress.units.items()))
                      + (f" ({progress.unit_name})" if progress.unit_name else ""))
    retried = sum(s.infra_retries for s in statuses.values())
    if retried:
        console.print(f"retried  {retried} time(s) after spot interruptions or lost hosts")
    for note in progress.notes:
        console.print(f"note     {printable(note)}", markup=False)
    line = no_metrics_line(run, statuses.values())
    if line:
        console.print(f"metrics  {line}", markup=False)
    if not progress.active:
        from batchsweep.report.results import identical_metrics

        same = identical_metrics(run, [s.index for s in statuses.values() if s.state is State.SUCCEEDED])
        if same:
            console.print(f"metrics  {same}", markup=False)
    if record.search:
        from batchsweep.planning.search import status_lines

        for line in status_lines(run):
            console.print(line, markup=False)
    bad = sorted((s for s in statuses.values() if s.state in (State.FAILED, State.TIMEOUT)), key=lambda s: s.index)
    lost = [i for i, state in states.items() if state is State.LOST]
    if lost:  # no status was written: only the engine can say why
        reasons = run.engine.failure_reasons()
        bad += [TaskStatus(index=i, state=State.LOST, attempts=0,
                           error=_lost_reason(run, i, reasons.get(i), shown=n < 20)) for n, i in enumerate(lost)]
    if bad:
        shown = {s.index for s in bad[:20]}  # a 100,000-task run's Task objects are not all kept for 20 rows
        params = {t.index: t.params for t in run.store.iter_tasks(run.id) if t.index in shown}
        rows = [[s.index, s.state.value, s.exit_code, s.attempts, s.error, _params(params.get(s.index, {}))]
                for s in bad[:20]]
        table, _ = fit_table(["task", "status", "exit", "attempts", "reason", "params"], rows, title="failed tasks",
                             width=console.width if console.is_terminal else None, wrap=("reason", "params"))
        console.print(table)
        if bad[0].command:
            console.print(f"task {bad[0].index} ran: {printable(bad[0].command)}", markup=False)
        if len(bad) > 20:
            console.print(f"… and {len(bad) - 20} more; all of them: batchsweep results {run.id} --format csv")
        console.print(f"a task's output: batchsweep logs {run.id} TASK --stderr · rerun: batchsweep resume {run.id}")


def _lost_reason(run: Run, index: int, reason: str | None, *, shown: bool) -> str:
    """The engine's reason for a task without a status, and (for the rows shown) the last line it printed."""
    reason = reason or LOST_REASON
    last = run.engine.last_output(index) if shown else None
    return f"{reason}; last output: {last[:200]}" if last else reason


def stop_line(run: Run, statuses: dict[int, TaskStatus], stop: Stop) -> str:
    """The stop rule, what it pruned and the task time (and, on AWS, the cost) that saved."""
    from batchsweep.task.stopping import saved_seconds

    text = f"{stop.rule} rule on {stop.metric} ({stop.direction or 'threshold'})"
    pruned = sum(1 for s in statuses.values() if s.state is State.PRUNED)
    saved = saved_seconds(statuses)
    if saved is None:
        return f"{text} · {pruned} pruned"
    text += f" · {saved[1]} pruned · ~{duration(saved[0])} of task time saved (a pruned task would have run about as " \
            "long as the median full task)"
    from batchsweep.report.cost import run_cost

    cost = run_cost(run.record, [saved[0]])
    if cost is not None:
        text += f" · ~${cost.high_usd:.2f} saved (estimate)"
    return text


WATCH_EVERY_S = 2.0


def watch_status(run: Run, *, every: float = WATCH_EVERY_S, rounds: int | None = None, clock: Clock = SYSTEM) -> None:
    """`status --watch`: the status and the running tasks' series, redrawn every `every` seconds of `clock` until
    the run ends."""
    console = _console()
    n = 0
    while True:
        active = run.poll().active
        if console.is_terminal:
            console.clear()
        print_status(run)
        table = live_table(run, width=console.width if console.is_terminal else None, active=active)
        if table is not None:
            console.print(table)
        n += 1
        if not active or (rounds is not None and n >= rounds):
            return
        console.print(f"watching {run.id}: every {every:g} s until it ends (Ctrl-C stops watching, not the run)",
                      markup=False)
        clock.sleep(every)


def live_table(run: Run, *, width: int | None, active: bool = True) -> Any:
    """Each running task with a series: its latest step, the latest value of the watched metric (the stop rule's,
    else the first in its series) and the best so far; None when no running task has reported a step yet.
    Running = a series and no status yet, read from the store; when the engine says the run ended (`active`
    false) such tasks may have been cut off, and the title says so."""
    from batchsweep.report.live import live_rows

    live = live_rows(run)
    if live is None:
        return None
    rows = [[r.index, r.step, r.value, r.best, _params(r.params)] for r in live.rows]
    title = "running tasks" if active else "tasks with a series and no status yet (still running, or cut off)"
    table, _ = fit_table(["task", "step", live.metric, f"best {live.metric}", "params"], rows, width=width,
                         title=title, wrap=("params",))
    return table


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={cell(v)}" for k, v in params.items())


WIDE_ONLY = ("attempts", "duration_s", "exit_code", "started_at", "ended_at", "worker", "peak_rss_mib", "cpu_s", "gpu",
             "gpu_mem_mib", "outputs")


def result_columns(df: pd.DataFrame, *, params: Sequence[str], metrics: Sequence[str],
                   derived: Sequence[str] = (), wide: bool = False) -> tuple[list[str], list[str]]:
    """The results table's columns, most useful first: task, the params that vary, status, the metrics (and
    `error` when a task failed); `wide` adds the fixed and derived params, timings, worker and outputs.
    Also returns the params left out because they do not vary or are made of other params."""
    structure = [c for c in OWN_PARAMS if c in df.columns]
    names = [p for p in params if p in df.columns and p not in structure]
    varying = [p for p in names if p not in derived and df[p].map(cell).nunique() > 1]
    quiet = [p for p in names if p not in varying]
    cols = ["task", *structure, *varying, "status", *(m for m in metrics if m in df.columns),
            *(c for c in ("last_step", "partial") if c in df.columns)]
    has_error = "error" in df.columns and df["error"].notna().any()
    if wide:
        cols += [*quiet, *(c for c in WIDE_ONLY if c in df.columns), *(["error"] if "error" in df.columns else [])]
        quiet = []
    elif has_error:
        cols.append("error")
    return [c for c in cols if c in df.columns], quiet


TABLE_ROWS = 1000  # a table shows this many rows at most: 100,000 would take minutes to draw, and no one reads them


def results_view(df: pd.DataFrame, *, params: Sequence[str], metrics: Sequence[str], derived: Sequence[str] = (),
                 width: int | None, wide: bool = False, columns: Sequence[str] | None = None,
                 title: str | None = None, sort: str | None = None, notes: Sequence[str] = ()) -> tuple[Any, list[str]]:
    """The results table fitted to `width` (None: every column), and the lines to print under it."""
    lines = list(notes)
    if columns:
        check_columns(df, columns)
        cols, quiet = list(columns), list[str]()
    elif width is None:
        cols, quiet = result_columns(df, params=params, metrics=metrics, derived=derived, wide=True)
    else:
        cols, quiet = result_columns(df, params=params, metrics=metrics, derived=derived, wide=wide)
    rows = [[_when(v) if c in ("started_at", "ended_at") else v for c, v in zip(cols, row, strict=True)]
            for row in df[cols].head(TABLE_ROWS).itertuples(index=False, name=None)]
    if len(df) > TABLE_ROWS:
        order = f"sorted by {sort}" if sort else "in task order; --sort COLUMN for the best first"
        lines.append(f"the first {TABLE_ROWS:,} of {len(df):,} tasks shown ({order}); all of them: -o results.csv "
                     "or --format csv")
    table, dropped = fit_table(cols, rows, width=width, title=title, keep=[sort] if sort else ())
    if quiet:
        lines.append("not shown (the same for every task, or made of other params): "
                     + ", ".join(f"{p}={cell(df[p].iloc[0])}" if p not in derived else p for p in quiet))
    if dropped:
        lines.append(f"not shown, too wide for {width} columns: {', '.join(dropped)} "
                     "(--columns picks, --format csv has all)")
    elif width is not None and not wide and not columns and any(c in df.columns for c in WIDE_ONLY):
        lines.append("attempts, durations, times, worker and outputs: --wide")
    return table, lines


def check_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    from batchsweep.errors import SweepError

    unknown = [c for c in columns if c not in df.columns]
    if unknown:
        raise SweepError(f"--columns {','.join(unknown)}: no such column; columns are: {', '.join(map(str, df.columns))}")


def _when(ts: Any) -> Any:
    if is_missing(ts) or not _is_number(ts):
        return ts
    return datetime.fromtimestamp(float(ts)).strftime("%m-%d %H:%M:%S")


def print_table(df: pd.DataFrame, run: Run, *, wide: bool = False, columns: Sequence[str] | None = None,
                sort: str | None = None, notes: Sequence[str] = ()) -> None:
    """On a terminal, the table fitted to its width; piped, every column (nothing is cut)."""
    from rich.console import Console

    from batchsweep.report.results import derived_params, metric_columns, utf8_table

    df = utf8_table(df)  # what a terminal can show: a lone surrogate escaped, like a control character
    terminal = sys.stdout.isatty()
    console = Console(highlight=False) if terminal else None
    table, lines = results_view(
        df, params=list(run.record.param_names), metrics=metric_columns(run, df),
        derived=derived_params(run), width=console.width if console else None, wide=wide, columns=columns,
        title=f"{run.id} · {len(df)} tasks", sort=sort, notes=notes)
    if console is None:
        console = Console(highlight=False, width=max(Console(width=100_000).measure(table).maximum, 80), soft_wrap=True)
    console.print(table)
    for line in lines:
        console.print(line, markup=False, style="dim" if terminal else None)
