"""What the CLI prints: tables of tasks, runs, statuses and results (rich on a terminal, plain text otherwise)."""

from __future__ import annotations

import math
import sys
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from batchsweep.model import State, TaskStatus

if TYPE_CHECKING:
    import pandas as pd

    from batchsweep.estimate import SweepEstimate
    from batchsweep.runs import Plan, Run

PLAN_ROWS = 20
STATE_ORDER = ("succeeded", "failed", "timeout", "lost", "cancelled", "running", "pending")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    terminal = (sys.stderr if stderr else sys.stdout).isatty()
    return Console(stderr=stderr, width=None if terminal else 200, soft_wrap=not terminal, highlight=False)


def _duration(seconds: float | None) -> str:
    if not seconds:
        return "none"
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v) or f"{seconds:g}s"


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.1f}" if value.is_integer() and abs(value) < 1e6 else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def _table(columns: list[str], rows: list[list[Any]], *, title: str | None = None) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(*columns, title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    return table


def print_plan(p: Plan, estimate: SweepEstimate | None = None) -> None:
    names = list(p.info["param_names"])
    rows: list[list[Any]] = [[t.index, *(t.params.get(n) for n in names), ", ".join(t.inputs)] for t in p.tasks]
    shown = rows if len(rows) <= PLAN_ROWS else rows[: PLAN_ROWS - 3] + [["…"] + [""] * (len(names) + 1)] + rows[-2:]
    console = _console()
    console.print(_table(["task", *names, "inputs"], shown))
    r = p.spec.resources
    console.print(
        f"{len(p.tasks)} tasks · backend {p.spec.backend} · {r.vcpus:g} vCPU, {r.memory_mib} MiB each · "
        f"timeout {_duration(p.spec.timeout)} · retries {p.spec.retries} · dry run: nothing was started"
    )
    if estimate is not None:
        console.print()
        print_estimate(estimate, console=console)


def print_estimate(estimate: SweepEstimate, *, console: Any = None) -> None:
    console = console or _console()
    for line in estimate.lines():
        console.print(line, markup=False)


def print_outcome(run: Run) -> None:
    counts, _ = run.counts()
    summary = ", ".join(f"{counts[k]} {k}" for k in STATE_ORDER if counts.get(k))
    print(f"{run.id}: {summary}", file=sys.stderr)
    if counts.get("succeeded", 0) != run.n_tasks:
        print(f"see why: batchsweep status {run.id} · rerun what failed: batchsweep resume {run.id}", file=sys.stderr)
    print(f"results: batchsweep results {run.id}", file=sys.stderr)


def print_runs(infos: list[dict[str, Any]], *, store: str | None) -> None:
    from batchsweep.runs import load_run

    rows = []
    for info in infos:
        try:
            run = load_run(info["run_id"], store=store)
            counts, progress = run.counts()
            info = {**info, "n_tasks": run.n_tasks}  # a search's pointer was written before its rounds
            state = ", ".join(f"{counts[k]} {k}" for k in STATE_ORDER if counts.get(k))
        except Exception as e:  # noqa: BLE001 - one unreadable run must not hide the others
            state = f"unreadable: {e}"
        created = datetime.fromisoformat(info["created"]).astimezone().strftime("%Y-%m-%d %H:%M") if info.get("created") else ""
        rows.append([info["run_id"], info.get("name"), info.get("backend"), created, info.get("n_tasks"), state])
    if not rows:
        print("no runs yet; start one with: batchsweep run sweep.yaml")
        return
    _console().print(_table(["run", "sweep", "backend", "created", "tasks", "states"], rows))


def run_state(run: Run, counts: Counter[str], active: bool) -> str:
    if active:
        return "running"
    if run.info.get("cancelled"):
        return "cancelled"
    if counts.get("pending"):
        return "interrupted (resumable)"
    return "finished"


def print_status(run: Run) -> None:
    statuses, progress = run.snapshot()
    states = run._states(statuses, progress)
    counts = Counter(s.value for s in states.values())
    console = _console()
    console.print(f"run      {run.id}")
    console.print(f"sweep    {run.name} · backend {run.info.get('backend')} · created {run.info.get('created')}")
    console.print(f"state    {run_state(run, counts, progress.active)}")
    console.print("tasks    " + ", ".join(f"{counts[k]} {k}" for k in STATE_ORDER if counts.get(k)) + f" (of {run.n_tasks})")
    durations = [s.duration_s for s in statuses.values() if s.duration_s is not None]
    if durations:
        console.print(f"compute  {sum(durations):.1f} s of task time (sum of task durations), "
                      f"longest {max(durations):.1f} s")
        from batchsweep.estimate import cost_summary, run_cost

        cost = run_cost(run.info, durations)
        if cost is not None:
            console.print(f"cost     {cost_summary(cost)}: an estimate from a price table, not a bill; "
                          f"its assumptions are in `batchsweep report {run.id}`", markup=False)
    batch_states = progress.extra.get("batch_states")
    if batch_states:
        console.print("engine   " + ", ".join(f"{n} {s}" for s, n in sorted(batch_states.items())) + " (child jobs)")
    retried = sum(s.infra_retries for s in statuses.values())
    if retried:
        console.print(f"retried  {retried} time(s) after spot interruptions or lost hosts")
    for note in progress.notes:
        console.print(f"note     {note}")
    if run.info.get("search"):
        from batchsweep.search import status_lines

        for line in status_lines(run):
            console.print(line, markup=False)
    bad = sorted((s for s in statuses.values() if s.state.value in ("failed", "timeout")), key=lambda s: s.index)
    lost = [i for i, state in states.items() if state is State.LOST]
    if lost:  # no status was written: only the engine can say why
        reasons = run.engine.failure_reasons()
        bad += [TaskStatus(index=i, state=State.LOST, attempts=0,
                           error=reasons.get(i, "ended without writing a status")) for i in lost]
    if bad:
        tasks = {t.index: t for t in run.tasks()}
        rows = [[s.index, s.state.value, s.exit_code, s.error, s.attempts, _params(tasks[s.index].params)] for s in bad[:20]]
        console.print(_table(["task", "status", "exit", "reason", "attempts", "params"], rows, title="failed tasks"))
        if len(bad) > 20:
            console.print(f"… and {len(bad) - 20} more; all of them: batchsweep results {run.id} --format csv")
        console.print(f"a task's output: batchsweep logs {run.id} TASK --stderr · rerun: batchsweep resume {run.id}")


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={_fmt(v)}" for k, v in params.items())


def print_table(df: pd.DataFrame, run: Run) -> None:
    hidden = {"started_at", "ended_at", "worker"}
    if "error" in df and df["error"].isna().all():
        hidden |= {"error", "exit_code"}
    cols = [c for c in df.columns if c not in hidden]
    rows = df[cols].values.tolist()
    _console().print(_table([str(c) for c in cols], rows, title=f"{run.id} · {len(df)} tasks"))
