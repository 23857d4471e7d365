"""The command line: a thin layer over the Python API (`batchsweep.runs.run`, `batchsweep.runs.catalog`, ...).

One module per command group, each adding its commands with `register`:

    run       run, estimate, resume, wait, cancel, init    start, follow and stop sweeps
    inspect   status, results, logs, report, study, diff, rerun   what runs did
    catalog   runs [rm, compact], gc                       list, delete and pack runs
    infra     infra, image, doctor                         the AWS stack and the task image

This module builds the parser and runs a command: logging, signals and how errors reach the terminal. Heavy
modules load lazily, inside the commands: `batchsweep --help` imports none of them.
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from batchsweep.cli import catalog, infra, inspect, run
from batchsweep.errors import SweepError


def _store_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--store",
        metavar="PATH",
        help="store directory or s3:// URI (env BATCHSWEEP_STORE; default ./.batchsweep)",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchsweep",
        description="Run a Python script or function over many parameter sets and get one results table: "
                    "on this machine (local), on AWS Batch (aws-batch) or on a Dask cluster (dask).",
    )
    parser.add_argument("--version", action=_VersionAction, nargs=0, help="show the version and exit")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show debug messages (the library logs to the `batchsweep` logger)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    store = _store_parent()
    for group in (run, inspect, catalog):
        group.register(sub, store)
    infra.register(sub)
    return parser


class _VersionAction(argparse.Action):
    """--version without reading package metadata on every start (importlib.metadata is slow to import)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from batchsweep.store.provenance import batchsweep_version

        print(f"batchsweep {batchsweep_version()}")
        parser.exit()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _sort_values(argv: list[str]) -> list[str]:
    """`--sort -loss`: argparse takes `-loss` for an option; glue it to its flag as `--sort=-loss`."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] == "--sort" and arg.startswith("-") and len(arg) > 1 and not arg.startswith("--"):
            out[-1] = f"--sort={arg}"
        else:
            out.append(arg)
    return out


_ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EIO)


class _StderrHandler(logging.Handler):
    """Library messages on the CLI's stderr: `warning: …` for problems, plain lines for progress notes.
    Writes to whatever sys.stderr is at the time (tests capture it per test)."""

    def emit(self, record: logging.LogRecord) -> None:
        prefix = {logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.DEBUG: "debug: "}.get(
            record.levelno, ""
        )
        print(prefix + record.getMessage(), file=sys.stderr, flush=True)


def _setup_logging(*, verbose: bool) -> None:
    logger = logging.getLogger("batchsweep")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_sort_values(list(sys.argv[1:] if argv is None else argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _setup_logging(verbose=args.verbose)
    # A SIGTERM to an attached run cancels it like Ctrl-C: children killed, run resumable.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return int(args.func(args))
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        return 0
    except (OSError, MemoryError) as e:
        # The machine, not the input and not a bug: a full disk, a read-only store, no memory.
        if isinstance(e, MemoryError) or e.errno in _ENVIRONMENT_ERRNOS:
            where = f" ({e.filename})" if isinstance(e, OSError) and e.filename else ""
            text = e.strerror if isinstance(e, OSError) and e.strerror else "out of memory"
            print(f"error: {text}{where}; fix that, then `batchsweep resume` continues any run it stopped",
                  file=sys.stderr)
            return 1
        raise
    except Exception as e:
        # AWS failures (no credentials, endpoint unreachable, access denied) are the user's setup, not our
        # bug; any other botocore error (a malformed request of ours) keeps its traceback.
        if type(e).__module__.startswith(("botocore", "boto3")):
            from batchsweep.aws.clients import explain

            line = explain(e)
            if line is not None:
                print(f"error: {line.splitlines()[0]}", file=sys.stderr)
                return 2
        raise
