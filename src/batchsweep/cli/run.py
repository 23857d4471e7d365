"""The commands that start, follow and stop sweeps: run, estimate, resume, wait, cancel, init."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TYPE_CHECKING, Any

from batchsweep.cli.common import latest_run_argument, out, output_file
from batchsweep.errors import SweepError

if TYPE_CHECKING:
    from batchsweep.planning.plan import Plan

MAX_TASKS = 1_000_000  # the same as batchsweep.planning.plan.MAX_TASKS (not imported: --help stays light)


def register(sub: Any, store: argparse.ArgumentParser) -> None:
    p = sub.add_parser("run", parents=[store], help="start a sweep and wait for it")
    _spec_options(p, set_help="e.g. --set timeout=30m --set window=5,10", max_parallel_help="0 = all cores")
    p.add_argument("--detach", action="store_true", help="submit and return; follow with `batchsweep wait`")
    p.add_argument(
        "--warm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="import the script's imports once and fork per task: --warm forces it (--set warm=true), "
        "--no-warm runs every task cold (--set warm=false); default: the spec's `warm:`, "
        "`auto` unless set (warm where it is safe)",
    )
    p.add_argument(
        "--right-size",
        action="store_true",
        help="use the smaller valid Fargate vCPU/memory that the sweep's latest finished run measured "
        "(same as --set resources.vcpus=… --set resources.memory_mib=…)",
    )
    p.add_argument("--dry-run", action="store_true",
                   help="print the tasks (a search: its trials, rounds and space) and, for aws-batch or with "
                        "--pilot/--task-seconds, an estimate; run nothing")
    p.add_argument(
        "--no-reuse",
        action="store_true",
        help="run every task, even those that already succeeded with the same content key in this store",
    )
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="also show debug messages; with --dry-run, also what each task's content key covers "
                        "(as `batchsweep explain`)")
    _duration_options(p, " (with --dry-run)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "explain",
        parents=[store],
        help="what each task's content key covers (which files, packages, inputs), and the reuse "
        "a run would find; runs nothing",
    )
    _spec_options(p, set_help="as for `run`", max_parallel_help="as for `run`")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser(
        "estimate",
        parents=[store],
        help="task count, resources and, for aws-batch, an estimated cost; runs nothing on AWS",
        description="Task durations: --task-seconds, else --pilot, else the median of the latest "
        "finished run of the same sweep in the store, else an assumed 60 s (said so). "
        "Region from aws.region, else AWS_REGION/AWS_DEFAULT_REGION, else us-east-1.",
    )
    _spec_options(p, set_help="as for `run`", max_parallel_help="shapes how tasks are packed on aws-batch")
    _duration_options(p, "")
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("resume", parents=[store], help="rerun only the tasks that did not succeed")
    latest_run_argument(p)
    p.add_argument(
        "--detach", action="store_true", help="start the tasks and return; follow with `batchsweep wait`"
    )
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("wait", parents=[store], help="wait with a progress bar until a run ends")
    latest_run_argument(p)
    p.set_defaults(func=cmd_wait)

    p = sub.add_parser("cancel", parents=[store], help="stop queued and running tasks")
    latest_run_argument(p)
    p.set_defaults(func=cmd_cancel)

    about = (
        "write a starter sweep.yaml from a script's command line (argparse, optparse, click, typer, fire, "
        "Hydra) or what it reads (env, a params file, globals)"
    )
    p = sub.add_parser("init", help=about, description=about[0].upper() + about[1:] + ".")
    p.add_argument("script", help="the Python script whose options become params")
    p.add_argument(
        "-o", "--output", default=None,
        help="where to write (default: sweep.yaml beside the script; - for stdout)"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument(
        "--python",
        default=None,
        metavar="PYTHON",
        help="read the script with this Python (the environment that has its packages) and write it as "
        "the spec's python:",
    )
    p.set_defaults(func=cmd_init)


def _spec_options(p: argparse.ArgumentParser, *, set_help: str, max_parallel_help: str) -> None:
    """What `run` and `estimate` take to plan a sweep: the spec and what overrides it."""
    p.add_argument("spec", help="the sweep.yaml")
    p.add_argument("--backend", help="local | aws-batch | dask | slurm (overrides the spec)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a spec field or param, {set_help} (repeatable)")
    p.add_argument("--max-parallel", type=int, help=f"tasks at once ({max_parallel_help})")
    p.add_argument(
        "--max-tasks",
        type=int,
        default=MAX_TASKS,
        metavar="N",
        help=f"refuse a space of more than N tasks (default {MAX_TASKS:,}), counted before expanding it",
    )


def _duration_options(p: argparse.ArgumentParser, when: str) -> None:
    durations = p.add_mutually_exclusive_group()
    durations.add_argument("--task-seconds", type=float, metavar="S",
                           help=f"assume each task takes S seconds{when}")
    durations.add_argument("--pilot", type=int, metavar="N",
                           help=f"time the first N tasks here, locally, and use their median duration{when}")


def cmd_run(args: argparse.Namespace) -> int:
    from batchsweep.planning import plan as planning
    from batchsweep.runs import start as runs

    if not args.dry_run and (args.task_seconds is not None or args.pilot is not None):
        raise SweepError("--task-seconds and --pilot only apply with --dry-run (or `batchsweep estimate`)")
    overrides = args.overrides if args.warm is None else [*args.overrides, f"warm={str(args.warm).lower()}"]
    if args.right_size:
        overrides = [*overrides, *_right_size_overrides(args)]
    p = planning.plan(args.spec, overrides=overrides, backend=args.backend, max_parallel=args.max_parallel,
                  check_engine=not args.dry_run, max_tasks=args.max_tasks)
    if p.spec.search:
        _quiet_optuna()
    for note in p.notes:
        print(f"note: {note}", file=sys.stderr, flush=True)
    if args.dry_run:
        from batchsweep.cli import display

        # An engine that prices nothing shows the tasks, unless a duration was asked for.
        wanted = p.engine.priced or args.task_seconds is not None or args.pilot is not None
        reuse = _dry_run_reuse(p, args)
        to_run = dataclasses.replace(p, tasks=reuse.to_run(p.tasks)) if reuse is not None else p
        display.print_plan(p, _estimate(to_run, args) if wanted and to_run.tasks else None)
        from batchsweep.store.core import Store

        preview = p.engine.preview(p.spec, to_run.tasks, store=Store.open(args.store))
        if preview:
            out(f"the {p.spec.backend} engine would submit (the first of its scripts):\n{preview}")
        if getattr(args, "verbose", False):
            display.print_key(p)
        if reuse is not None and p.tasks and not p.spec.search:
            out(reuse.line() + ("; the estimate covers the tasks to run" if wanted and reuse.found else ""))
        return 0
    detach = args.detach or p.engine.detaches
    run = runs.start(p, store=args.store, detach=detach, reuse=not args.no_reuse,
                     say=lambda line: print(line, file=sys.stderr, flush=True))
    del p  # its tasks are in the store now: a 100,000-task plan is not held while the run is waited for
    if detach:
        out(run.id)
        out(f"submitted {run.n_tasks} tasks; follow with: batchsweep wait {run.id}")
        return 0
    return _wait(run, announce=True)


def cmd_explain(args: argparse.Namespace) -> int:
    from batchsweep.cli import display

    p = _plan_unchecked(args)
    display.print_key(p)
    args.no_reuse = False
    reuse = _dry_run_reuse(p, args)
    if reuse is not None and p.tasks and not p.spec.search:
        out(f"reuse     {reuse.line()}")
    return 0


def _dry_run_reuse(p: Any, args: argparse.Namespace) -> Any:
    """The reuse a real run would find, where a dry run can read the store (not the S3 store: no AWS
    calls)."""
    from batchsweep.planning import plan as planning

    if args.no_reuse:
        return None
    try:
        return planning.find_reuse(p, store=args.store)
    except SweepError:
        print(
            "reuse: looked up when the run starts (a dry run does not read the remote store)", file=sys.stderr
        )
        return None


def _right_size_overrides(args: argparse.Namespace) -> list[str]:
    """`--right-size`: the smaller Fargate size that the sweep's latest finished run measured, as --set
    values."""
    from batchsweep.planning import plan as planning
    from batchsweep.runs.estimate import earlier_right_size

    p = planning.plan(args.spec, overrides=args.overrides, backend=args.backend, check_engine=False)
    suggestion = earlier_right_size(p.spec, store=args.store)
    if suggestion is None:
        raise SweepError(
            f"--right-size: no finished run of sweep {p.spec.name!r} in this store measured a size "
            "worth changing to; run it once (locally is fine), or drop --right-size"
        )
    print(f"right-size: {suggestion.line()}", file=sys.stderr, flush=True)
    return suggestion.overrides


def _quiet_optuna() -> None:
    """Optuna logs every trial at INFO; the CLI shows its own round lines instead. (The library leaves
    Optuna's global verbosity alone: that is the caller's to set.)"""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _wait(run: Any, *, announce: bool = False) -> int:
    # A Ctrl-C from the instant the tasks started cancels them: nothing (a print, an import) comes between.
    try:
        if announce:
            out(run.id)
        code: int = run.wait()
    except KeyboardInterrupt:
        print("\ncancelling: stopping running tasks...", file=sys.stderr, flush=True)
        run.cancel()
        print(f"cancelled; finish it later with: batchsweep resume {run.id}", file=sys.stderr)
        return 130
    from batchsweep.cli import display

    display.print_outcome(run)
    return code


def cmd_estimate(args: argparse.Namespace) -> int:
    from batchsweep.cli import display

    p = _plan_unchecked(args)
    display.print_estimate(_estimate(p, args))
    return 0


def _estimate(p: Any, args: argparse.Namespace) -> Any:
    from batchsweep.runs.estimate import estimate_plan

    if args.pilot is not None:
        print(
            f"pilot: running {min(args.pilot, len(p.tasks))} task(s) here to time them...",
            file=sys.stderr,
            flush=True,
        )
    return estimate_plan(p, task_seconds=args.task_seconds, pilot=args.pilot, store=args.store)


def cmd_resume(args: argparse.Namespace) -> int:
    from batchsweep.runs import catalog

    run = catalog.load_run(args.run, store=args.store)
    if run.record.search:
        _quiet_optuna()
    detach = args.detach or run.engine.detaches
    todo = run.resume(detach=detach)
    out(run.id)
    if run.resume_reused is not None and run.resume_reused.found:
        print(f"resume: {run.resume_reused.line()}", file=sys.stderr)
    if not todo:
        out(
            "nothing left to run: every task succeeded or was reused"
            if run.resume_reused and run.resume_reused.found
            else "nothing to resume: every task succeeded"
        )
        return 0
    print(f"resuming {len(todo)} of {run.n_tasks} tasks", file=sys.stderr)
    if detach:
        return 0
    return _wait(run)


def cmd_cancel(args: argparse.Namespace) -> int:
    from batchsweep.runs import catalog

    run = catalog.load_run(args.run, store=args.store)
    if not run.poll().active:
        out(f"{run.id} is not running; nothing to cancel")
        return 0
    unconfirmed = run.cancel()
    if unconfirmed:
        print(f"error: cancel of {run.id} requested, but {unconfirmed}; check again with "
              f"`batchsweep status {run.id}`", file=sys.stderr)
        return 1
    out(f"cancelled {run.id}; resume it with: batchsweep resume {run.id}")
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    from batchsweep.runs import catalog

    return _wait(catalog.load_run(args.run, store=args.store))


def cmd_init(args: argparse.Namespace) -> int:
    from batchsweep.scripts import starter

    output_file(args.output, example="sweep.yaml")
    path = starter.write_starter(args.script, output=args.output, force=args.force, python=args.python)
    if starter.is_stream(path):  # stdout holds the spec alone
        print("save it as sweep.yaml here, edit the grid, then: batchsweep run sweep.yaml", file=sys.stderr)
    else:
        out(f"wrote {path}; edit the grid, then: batchsweep run {path}")
    return 0


def _plan_unchecked(args: argparse.Namespace) -> Plan:
    """The plan `explain` and `estimate` read: the command line's spec and overrides, the engine not asked."""
    from batchsweep.planning import plan as planning

    return planning.plan(args.spec, overrides=args.overrides, backend=args.backend,
                         max_parallel=args.max_parallel, check_engine=False, max_tasks=args.max_tasks)
