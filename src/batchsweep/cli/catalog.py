"""The commands that list, delete and pack runs: runs [rm RUN... | compact [RUN]], gc."""

from __future__ import annotations

import argparse
from typing import Any

from batchsweep.cli.common import out
from batchsweep.errors import SweepError


def register(sub: Any, store: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "runs",
        parents=[store],
        help="list runs; `runs rm RUN...` deletes runs, `runs compact [RUN]` "
        "packs a finished run's statuses and metrics into one file",
        usage="%(prog)s [-h] [--store PATH] [rm RUN... [--yes] | compact [RUN]]",
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=("rm", "compact"),
        help="rm: delete the runs named after it (a dry "
        "run without --yes), then the code packages and inputs no remaining run uses; compact: pack a "
        "finished local run's per-task statuses and metrics into one file (logs kept; the latest run "
        "without RUN)",
    )
    p.add_argument(
        "ids",
        nargs="*",
        metavar="RUN",
        help="with rm: run ids or unique parts of them; with compact: one run",
    )
    p.add_argument("--yes", action="store_true", help="with rm: delete (without it, only say what would go)")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("gc", parents=[store],
                       help="delete old runs and unused code packages and inputs (a dry run without --yes)")
    p.add_argument(
        "--keep-last", type=int, metavar="N", help="keep the last N runs of each sweep, delete older ones"
    )
    p.add_argument("--older-than", metavar="AGE", help="delete runs created more than AGE ago (30d, 12h)")
    p.add_argument("--yes", action="store_true", help="delete (without it, only say what would go)")
    p.set_defaults(func=cmd_gc)


def cmd_runs(args: argparse.Namespace) -> int:
    from batchsweep.cli import display
    from batchsweep.runs import catalog

    if args.action == "rm":
        from batchsweep.runs import housekeeping

        if not args.ids:
            raise SweepError("runs rm: name the runs to delete, e.g. `batchsweep runs rm RUN_ID`")
        return _delete(housekeeping.rm_plan(args.ids, store=args.store), args)
    if args.action == "compact":
        from batchsweep.store.compact import compact

        if len(args.ids) > 1 or args.yes:
            raise SweepError("runs compact: one RUN at a time, without --yes")
        run = catalog.load_run(args.ids[0] if args.ids else None, store=args.store)
        out(compact(run).line(run.id))
        return 0
    if args.ids or args.yes:
        raise SweepError("runs: RUN ids and --yes go with `runs rm`")
    display.print_runs(catalog.list_runs(store=args.store), store=args.store)
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from batchsweep.runs import housekeeping

    return _delete(
        housekeeping.gc_plan(store=args.store, keep_last=args.keep_last, older_than=args.older_than), args
    )


def _delete(plan: Any, args: argparse.Namespace) -> int:
    from batchsweep.runs import housekeeping

    lines = plan.lines()
    if not lines:
        out("nothing to delete")
        return 0
    if not args.yes:
        for line in lines:
            out(f"would delete {line}")
        out("dry run: nothing was deleted; add --yes to delete")
        return 0
    return 1 if housekeeping.execute(plan, local=args.store, say=out) else 0
