"""`batchsweep status`: a run's state, counts, reuse, warm start, compute, cost, stopping and notes, and
`status --watch` with each running task's latest step."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from batchsweep.cli.tables import fit_table, make_console, params_text
from batchsweep.clock import SYSTEM, Clock
from batchsweep.model import LOST_REASON, State, TaskStatus
from batchsweep.text import duration, printable, state_counts

if TYPE_CHECKING:

    from batchsweep.runs.run import Run
    from batchsweep.spec.schema import Stop

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
    console = make_console()
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

        console.print(
            f"reuse    {account_line(account, 'to run' if progress.active else 'ran')}", markup=False
        )
    line = warm_line(statuses.values())
    if line:
        console.print(f"warm     {line}", markup=False)
    # A reused task's duration is the time its own run spent: this run neither spent nor paid it.
    ran = [s for s in statuses.values() if not s.reused_from]
    durations = [s.duration_s for s in ran if s.duration_s is not None]
    reused = len(statuses) - len(ran)
    if reused and not ran:
        console.print(f"compute  none: all {reused} tasks were reused from earlier runs")
    if durations:
        console.print(f"compute  {duration(sum(durations))} of task time (sum of task durations"
                      + (f" of the {len(ran)} run here; {reused} reused not counted" if reused else "")
                      + f"), longest {duration(max(durations))}")
        from batchsweep.report.cost import container_seconds, cost_summary, run_cost

        cost = run_cost(record, durations, containers_s=container_seconds(
            (s.worker, s.started_at, s.ended_at) for s in ran))
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
    bad = sorted(
        (s for s in statuses.values() if s.state in (State.FAILED, State.TIMEOUT)), key=lambda s: s.index
    )
    lost = [i for i, state in states.items() if state is State.LOST]
    if lost:  # no status was written: only the engine can say why
        reasons = run.engine.failure_reasons()
        bad += [
            TaskStatus(
                index=i,
                state=State.LOST,
                attempts=0,
                error=_lost_reason(run, i, reasons.get(i), shown=n < 20),
            )
            for n, i in enumerate(lost)
        ]
    if bad:
        shown = {s.index for s in bad[:20]}  # a 100,000-task run's Task objects are not all kept for 20 rows
        params = {t.index: t.params for t in run.store.iter_tasks(run.id) if t.index in shown}
        rows = [
            [s.index, s.state.value, s.exit_code, s.attempts, s.error, params_text(params.get(s.index, {}))]
            for s in bad[:20]
        ]
        table, _ = fit_table(
            ["task", "status", "exit", "attempts", "reason", "params"],
            rows,
            title="failed tasks",
            width=console.width if console.is_terminal else None,
            wrap=("reason", "params"),
        )
        console.print(table)
        if bad[0].command:
            console.print(f"task {bad[0].index} ran: {printable(bad[0].command)}", markup=False)
        if len(bad) > 20:
            console.print(
                f"… and {len(bad) - 20} more; all of them: batchsweep results {run.id} --format csv"
            )
        console.print(
            f"a task's output: batchsweep logs {run.id} TASK --stderr · rerun: batchsweep resume {run.id}"
        )


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
    text += (
        f" · {saved[1]} pruned · ~{duration(saved[0])} of task time saved (a pruned task would have run "
        "about as long as the median full task)"
    )
    from batchsweep.report.cost import run_cost

    cost = run_cost(run.record, [saved[0]])
    if cost is not None:
        text += f" · ~${cost.high_usd:.2f} saved (estimate)"
    return text


WATCH_EVERY_S = 2.0


def watch_status(
    run: Run, *, every: float = WATCH_EVERY_S, rounds: int | None = None, clock: Clock = SYSTEM
) -> None:
    """`status --watch`: the status and the running tasks' series, redrawn every `every` seconds of `clock`
    until the run ends."""
    console = make_console()
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
        console.print(
            f"watching {run.id}: every {every:g} s until it ends (Ctrl-C stops watching, not the run)",
            markup=False,
        )
        clock.sleep(every)


def live_table(run: Run, *, width: int | None, active: bool = True) -> Any:
    """Each running task with a series: its latest step, the latest value of the watched metric (the stop
    rule's, else the first in its series) and the best so far; None when no running task has reported a step
    yet. Running = a series and no status yet, read from the store; when the engine says the run ended
    (`active` false) such tasks may have been cut off, and the title says so."""
    from batchsweep.report.live import live_rows

    live = live_rows(run)
    if live is None:
        return None
    rows = [[r.index, r.step, r.value, r.best, params_text(r.params)] for r in live.rows]
    title = "running tasks" if active else "tasks with a series and no status yet (still running, or cut off)"
    table, _ = fit_table(["task", "step", live.metric, f"best {live.metric}", "params"], rows, width=width,
                         title=title, wrap=("params",))
    return table
