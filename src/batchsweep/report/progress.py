"""Watch a run until it ends: a live bar on a terminal or in a Jupyter notebook, plain progress lines
otherwise (CI, pipes)."""

from __future__ import annotations

import math
import os
import sys
import time
from typing import TYPE_CHECKING

from batchsweep.clock import SYSTEM, Clock
from batchsweep.model import DONE_STATE_NAMES, FAILED_STATE_NAMES, OK_STATE_NAMES
from batchsweep.text import printable, state_counts

if TYPE_CHECKING:
    from batchsweep.runs.run import Run

PLAIN_EVERY_S = 5.0
LIVE_LOCAL_S = 1.0  # how often the notebook progress re-reads the running tasks' series: a local store
LIVE_REMOTE_S = 10.0  # S3: a listing and a GET per running task each time


def _plain() -> bool:
    return not sys.stderr.isatty() or bool(os.environ.get("CI"))


def _eta(started: float, now: float, done: int, total: int) -> str:
    if done == 0 or done >= total:
        return "--:--"
    left = (now - started) / done * (total - done)
    return time.strftime("%H:%M:%S" if left >= 3600 else "%M:%S", time.gmtime(left))


def watch(run: Run, *, show: bool = True, interval: float = 0.25, clock: Clock = SYSTEM) -> None:
    """Poll the run every `interval` seconds of `clock` until it ends, showing its progress when `show`."""
    total = run.n_tasks
    started = clock.monotonic()
    if not show:
        while run.poll().active:
            clock.sleep(interval)
        return
    if in_jupyter():
        _watch_jupyter(run, total, started, interval, clock)
    elif _plain():
        _watch_plain(run, total, started, interval, clock)
    else:
        _watch_rich(run, total, started, interval, clock)


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (not a terminal IPython, where the terminal bar works)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def jupyter_bar(name: str, done: int, total: int, counts: dict[str, int], eta: str) -> str:
    from html import escape

    return (
        f"<div><b>{escape(name)}</b> <progress value='{done}' max='{max(total, 1)}' "
        f"style='width:40%'></progress> {done}/{total} · {escape(state_counts(counts)) or 'starting'}"
        + (f" · eta {eta}" if eta != "--:--" else "")
        + "</div>"
    )


def live_html(run: Run) -> str:
    """The running tasks' series as a notebook table (latest step, value, best, a sparkline); "" when none has
    reported a step, or when the store cannot be read right now (the bar goes on)."""
    from batchsweep.report.live import html_table, live_rows

    try:
        live = live_rows(run)
    except Exception:  # noqa: BLE001 - a progress display must not end the run's wait
        return ""
    return html_table(live) if live is not None else ""


def _watch_jupyter(run: Run, total: int, started: float, interval: float, clock: Clock) -> None:
    # One display updated in place: needs only IPython (rich's live display in Jupyter needs ipywidgets).
    from IPython.display import HTML, display

    handle, seen_notes = None, set()
    live, live_at = "", -math.inf
    # each refresh lists the run and reads series
    every = LIVE_LOCAL_S if run.store.is_local else LIVE_REMOTE_S
    while True:
        counts, progress = run.counts()
        done = sum(counts.get(k, 0) for k in DONE_STATE_NAMES)
        if not progress.active:
            live = ""
        elif clock.monotonic() - live_at >= every:
            live, live_at = live_html(run), clock.monotonic()
        bar = HTML(
            jupyter_bar(run.name, done, total, counts, _eta(started, clock.monotonic(), done, total)) + live
        )
        if handle is None:
            handle = display(bar, display_id=True)
        else:
            handle.update(bar)
        for note in progress.notes:
            if note not in seen_notes:
                seen_notes.add(note)
                print(f"note: {printable(note)}", file=sys.stderr, flush=True)
        if not progress.active:
            return
        clock.sleep(max(interval, 0.5))


def _watch_plain(run: Run, total: int, started: float, interval: float, clock: Clock) -> None:
    last_line, last_shown, last_print = "", "", 0.0
    seen_notes: set[str] = set()
    while True:
        counts, progress = run.counts()
        done = sum(counts.get(k, 0) for k in DONE_STATE_NAMES)
        line = f"[{done}/{total}] {state_counts(counts)}"
        now = clock.monotonic()
        # An eta only while tasks are left: a run whose tasks were all reused is complete at its first poll.
        shown = f"{line}  eta {_eta(started, now, done, total)}" if progress.active and done < total else line
        if (not progress.active and shown != last_shown) or (
            line != last_line and now - last_print >= PLAIN_EVERY_S
        ):
            print(shown, file=sys.stderr, flush=True)
            last_line, last_shown, last_print = line, shown, now
        for note in progress.notes:  # an engine repeats its notes in each poll until they change
            if note not in seen_notes:
                seen_notes.add(note)
                print(f"note: {printable(note)}", file=sys.stderr, flush=True)
        if not progress.active:
            return
        clock.sleep(interval)


def _watch_rich(run: Run, total: int, started: float, interval: float, clock: Clock) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "[green]✓ {task.fields[ok]}[/] [red]✗ {task.fields[bad]}[/] [cyan]▶ {task.fields[running]}[/]"
        ),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    seen_notes: set[str] = set()
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(run.name, total=total, ok=0, bad=0, running=0)
        while True:
            counts, progress = run.counts()
            bad = sum(counts.get(k, 0) for k in FAILED_STATE_NAMES)
            ok = sum(counts.get(k, 0) for k in OK_STATE_NAMES)
            done = ok + bad
            bar.update(task, completed=done, ok=ok, bad=bad, running=counts.get("running", 0))
            for note in progress.notes:
                if note not in seen_notes:
                    seen_notes.add(note)
                    # an engine's note may quote a task
                    bar.console.print(f"[yellow]note:[/] {escape(printable(note))}")
            if not progress.active:
                return
            clock.sleep(interval)
