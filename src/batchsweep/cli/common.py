"""What every command group shares."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchsweep.runs.history import SweepHistory
    from batchsweep.runs.run import Run


def out(text: str = "") -> None:
    """A line of the command's output (stdout), flushed so it interleaves with stderr as it happens."""
    print(text, flush=True)


def latest_run_argument(p: argparse.ArgumentParser) -> None:
    """The optional RUN of the commands that read one run: the latest when not given."""
    p.add_argument("run", nargs="?", help="run id or a unique part of one (default: the latest run)")


def run_or_sweep(args: argparse.Namespace, command: str) -> tuple[Run, SweepHistory | None]:
    """The run `RUN` names (the latest without it), or with `--sweep NAME` the sweep's history and its latest
    run."""
    from batchsweep.runs import catalog

    if not args.sweep:
        return catalog.load_run(args.run, store=args.store), None
    from batchsweep.runs.history import load_sweep

    if args.run:
        from batchsweep.errors import SweepError

        raise SweepError(f"{command}: give a RUN or --sweep NAME, not both")
    history = load_sweep(args.sweep, store=args.store)
    return history.latest, history


def output_file(path: str | None, *, example: str) -> None:
    """`-o FILE` names a file that can be written: not a directory, in a directory that exists (checked before
    any work, so a typo costs nothing). SweepError in one line otherwise."""
    import os

    from batchsweep.errors import SweepError

    if path is None:
        return
    if os.path.isdir(path):
        raise SweepError(f"-o {path}: is a directory; name a file, e.g. -o {os.path.join(path, example)}")
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        raise SweepError(
            f"-o {path}: the directory {parent} does not exist; create it or name a file elsewhere"
        )
