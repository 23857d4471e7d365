"""How a task's output lines are marked in a container's log stream (DESIGN §6).

On AWS Batch one container runs several tasks one after another, and its stdout goes to one CloudWatch log
stream; each line of a task's stdout is written there as `[task 7] line`, each line of its stderr as
`[task 7 stderr] line`. The worker writes these prefixes and the engine reads them back (`batchsweep logs`).
"""

from __future__ import annotations

import re

_LINE = re.compile(r"^\[task (\d+)( stderr)?\] ?(.*)$", re.DOTALL)


def prefix(index: int, *, stderr: bool = False) -> bytes:
    return f"[task {index}{' stderr' if stderr else ''}] ".encode()


def parse(line: str) -> tuple[int, bool, str] | None:
    """(task index, from stderr, the task's own line) of a prefixed line; None for the worker's own lines."""
    found = _LINE.match(line)
    if found is None:
        return None
    return int(found.group(1)), found.group(2) is not None, found.group(3)
