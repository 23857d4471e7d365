"""The command line: a thin layer over the Python API (`batchsweep.runs`). Heavy modules load lazily."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from batchsweep.errors import SweepError

MAX_TASKS = 1_000_000  # the same as batchsweep.planning.MAX_TASKS (not imported: --help stays light)


def _store_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--store", metavar="PATH", help="store directory or s3:// URI (env BATCHSWEEP_STORE; default ./.batchsweep)")
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

    p = sub.add_parser("run", parents=[store], help="start a sweep and wait for it")
    p.add_argument("spec", help="the sweep.yaml")
    p.add_argument("--backend", help="local | aws-batch | dask (overrides the spec)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field or param, e.g. --set timeout=30m --set window=5,10 (repeatable)")
    p.add_argument("--max-parallel", type=int, help="tasks at once (0 = all cores)")
    p.add_argument("--max-tasks", type=int, default=MAX_TASKS, metavar="N",
                   help=f"refuse a space of more than N tasks (default {MAX_TASKS:,}), counted before expanding it")
    p.add_argument("--detach", action="store_true", help="submit and return; follow with `batchsweep wait`")
    p.add_argument("--warm", action="store_true",
                   help="local: import the script's imports once and fork per task (same as --set warm=true)")
    p.add_argument("--right-size", action="store_true",
                   help="use the smaller valid Fargate vCPU/memory that the sweep's latest finished run measured "
                        "(same as --set resources.vcpus=… --set resources.memory_mib=…)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the tasks (a search: its trials, rounds and space) and, for aws-batch or with "
                        "--pilot/--task-seconds, an estimate; run nothing")
    p.add_argument("--no-reuse", action="store_true",
                   help="run every task, even those that already succeeded with the same content key in this store")
    _duration_options(p, " (with --dry-run)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("estimate", parents=[store],
                       help="task count, resources and, for aws-batch, an estimated cost; runs nothing on AWS",
                       description="Task durations: --task-seconds, else --pilot, else the median of the latest "
                                   "finished run of the same sweep in the store, else an assumed 60 s (said so). "
                                   "Region from aws.region, else AWS_REGION/AWS_DEFAULT_REGION, else us-east-1.")
    p.add_argument("spec", help="the sweep.yaml")
    p.add_argument("--backend", help="local | aws-batch | dask (overrides the spec)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field or param, as for `run` (repeatable)")
    p.add_argument("--max-parallel", type=int, help="tasks at once (shapes how tasks are packed on aws-batch)")
    p.add_argument("--max-tasks", type=int, default=MAX_TASKS, metavar="N",
                   help=f"refuse a space of more than N tasks (default {MAX_TASKS:,})")
    _duration_options(p, "")
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("runs", parents=[store], help="list runs; `runs rm RUN...` deletes runs, `runs compact [RUN]` "
                       "packs a finished run's statuses and metrics into one file",
                       usage="%(prog)s [-h] [--store PATH] [rm RUN... [--yes] | compact [RUN]]")
    p.add_argument("action", nargs="?", choices=("rm", "compact"), help="rm: delete the runs named after it (a dry "
                   "run without --yes), then the code packages and inputs no remaining run uses; compact: pack a "
                   "finished local run's per-task statuses and metrics into one file (logs kept; the latest run "
                   "without RUN)")
    p.add_argument("ids", nargs="*", metavar="RUN", help="with rm: run ids or unique prefixes; with compact: one run")
    p.add_argument("--yes", action="store_true", help="with rm: delete (without it, only say what would go)")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("gc", parents=[store],
                       help="delete old runs and unused code packages and inputs (a dry run without --yes)")
    p.add_argument("--keep-last", type=int, metavar="N", help="keep the last N runs of each sweep, delete older ones")
    p.add_argument("--older-than", metavar="AGE", help="delete runs created more than AGE ago (30d, 12h)")
    p.add_argument("--yes", action="store_true", help="delete (without it, only say what would go)")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("status", parents=[store], help="counts by state and the failed tasks' reasons")
    p.add_argument("run", nargs="?", help="run id or a unique prefix (default: the latest run)")
    p.add_argument("--watch", action="store_true",
                   help="refresh every 2 s until the run ends, with each running task's latest step, value and best")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("results", parents=[store], help="one row per task with params and metrics")
    p.add_argument("run", nargs="?", help="run id or a unique prefix (default: the latest run)")
    p.add_argument("--sweep", metavar="NAME",
                   help="every run of sweep NAME as one table: a row per distinct task, the latest success winning, "
                        "with the run it came from")
    p.add_argument("--format", choices=("table", "csv", "json", "parquet"), default=None,
                   help="default: from -o FILE's extension (.csv, .json, .parquet), else a table")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of the terminal")
    p.add_argument("--sort", metavar="COLUMN",
                   help="sort by COLUMN, best first: names like loss, error, rmse, drawdown, time ascending, other "
                        "metrics descending (-COL largest first, +COL smallest first); missing values last")
    order = p.add_mutually_exclusive_group()
    order.add_argument("--asc", dest="ascending", action="store_true", default=None, help="with --sort: smallest first")
    order.add_argument("--desc", dest="ascending", action="store_false", help="with --sort: largest first")
    p.add_argument("--wide", action="store_true",
                   help="table: also the fixed and derived params, attempts, durations, times, worker and outputs")
    p.add_argument("--columns", metavar="A,B,C", help="only these columns, in this order (table, csv, json or parquet)")
    p.add_argument("--refresh", action="store_true", help="re-read every task instead of the cached table")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("logs", parents=[store], help="a task's output",
                       usage="%(prog)s [-h] [--store PATH] [--stderr] [--follow] [RUN] TASK")
    p.add_argument("ids", nargs="+", metavar="[RUN] TASK",
                   help="run id or a unique prefix (default: the latest run), then the task index: "
                        "`logs 7` is task 7 of the latest run")
    p.add_argument("--stderr", action="store_true", help="stderr instead of stdout")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the task ends")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("resume", parents=[store], help="rerun only the tasks that did not succeed")
    p.add_argument("run", nargs="?", help="run id or a unique prefix (default: the latest run)")
    p.add_argument("--detach", action="store_true", help="start the tasks and return; follow with `batchsweep wait`")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("cancel", parents=[store], help="stop queued and running tasks")
    p.add_argument("run", nargs="?", help="run id or a unique prefix (default: the latest run)")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("wait", parents=[store], help="wait with a progress bar until a run ends")
    p.add_argument("run", nargs="?", help="run id or a unique prefix (default: the latest run)")
    p.set_defaults(func=cmd_wait)

    p = sub.add_parser("init", help="write a starter sweep.yaml for an existing argparse script")
    p.add_argument("script", help="the argparse script whose flags become params")
    p.add_argument("-o", "--output", default=None, help="where to write (default: sweep.yaml beside the script)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("rerun", parents=[store],
                       help="replay one task of any run (local or AWS) here, in the foreground, to debug it")
    p.add_argument("run", metavar="RUN", help="run id or a unique prefix")
    p.add_argument("task", metavar="TASK", type=int, help="the task's index")
    p.add_argument("--dir", metavar="D", help="recreate the task's directory here (default: a new temporary one)")
    p.add_argument("--shell", action="store_true",
                   help="start $SHELL in the task's directory with its environment instead of running it")
    p.set_defaults(func=cmd_rerun)

    p = sub.add_parser("diff", parents=[store], help="what changed between two runs and which tasks' metrics moved")
    p.add_argument("run_a", metavar="RUN_A", help="the earlier run (id or a unique prefix)")
    p.add_argument("run_b", metavar="RUN_B", help="the later run (id or a unique prefix)")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("report", parents=[store], help="a self-contained HTML report with plots")
    p.add_argument("run", nargs="?", help="run id or a unique prefix (default: the latest run)")
    p.add_argument("--sweep", metavar="NAME", help="plot every run of sweep NAME as one table (see results --sweep)")
    p.add_argument("-o", "--output", default="report.html", metavar="FILE", help="where to write (default: report.html)")
    p.add_argument("--metric", help="the metric to rank by (default: picked and named in the report)")
    direction = p.add_mutually_exclusive_group()
    direction.add_argument("--maximize", dest="maximize", action="store_true", default=None,
                           help="higher is better (default: from the metric's name, else maximize)")
    direction.add_argument("--minimize", dest="maximize", action="store_false", help="lower is better")
    p.set_defaults(func=cmd_report)

    for module in ("batchsweep.infra.cli",):
        _register(module, sub)
    return parser


def _duration_options(p: argparse.ArgumentParser, when: str) -> None:
    durations = p.add_mutually_exclusive_group()
    durations.add_argument("--task-seconds", type=float, metavar="S",
                           help=f"assume each task takes S seconds{when}")
    durations.add_argument("--pilot", type=int, metavar="N",
                           help=f"time the first N tasks here, locally, and use their median duration{when}")


def _register(module: str, sub: Any) -> None:
    import importlib

    try:
        importlib.import_module(module).register(sub)
    except ImportError:
        pass


class _VersionAction(argparse.Action):
    """--version without reading package metadata on every start (importlib.metadata is slow to import)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from batchsweep.provenance import batchsweep_version

        print(f"batchsweep {batchsweep_version()}")
        parser.exit()


def _out(text: str = "") -> None:
    print(text, flush=True)


# -- commands -----------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from batchsweep import planning, runs

    if not args.dry_run and (args.task_seconds is not None or args.pilot is not None):
        raise SweepError("--task-seconds and --pilot only apply with --dry-run (or `batchsweep estimate`)")
    overrides = [*args.overrides, "warm=true"] if args.warm else args.overrides
    if args.right_size:
        overrides = [*overrides, *_right_size_overrides(args)]
    p = planning.plan(args.spec, overrides=overrides, backend=args.backend, max_parallel=args.max_parallel,
                  check_engine=not args.dry_run, max_tasks=args.max_tasks)
    if p.spec.search:
        _quiet_optuna()
    for note in p.notes:
        print(f"note: {note}", file=sys.stderr, flush=True)
    if args.dry_run:
        from batchsweep import display

        # Local and Dask cost nothing to estimate: their dry run shows the tasks, unless a duration was asked for.
        wanted = p.spec.backend == "aws-batch" or args.task_seconds is not None or args.pilot is not None
        reuse = _dry_run_reuse(p, args)
        to_run = dataclasses.replace(p, tasks=reuse.to_run(p.tasks)) if reuse is not None else p
        display.print_plan(p, _estimate(to_run, args) if wanted and to_run.tasks else None)
        if reuse is not None and reuse.found:
            _out(reuse.line() + ("; the estimate covers the tasks to run" if wanted else ""))
        return 0
    run = runs.start(p, store=args.store, detach=args.detach, reuse=not args.no_reuse,
                     say=lambda line: print(line, file=sys.stderr, flush=True))
    _out(run.id)
    if args.detach:
        _out(f"submitted {run.n_tasks} tasks; follow with: batchsweep wait {run.id}")
        return 0
    return _wait(run)


def _dry_run_reuse(p: Any, args: argparse.Namespace) -> Any:
    """The reuse a real run would find, where a dry run can read the store (not the S3 store: no AWS calls)."""
    from batchsweep import planning

    if args.no_reuse:
        return None
    try:
        return planning.find_reuse(p, store=args.store)
    except SweepError:
        print("reuse: looked up when the run starts (a dry run does not read the remote store)", file=sys.stderr)
        return None


def _right_size_overrides(args: argparse.Namespace) -> list[str]:
    """`--right-size`: the smaller Fargate size that the sweep's latest finished run measured, as --set values."""
    from batchsweep import planning
    from batchsweep.estimate import earlier_right_size

    p = planning.plan(args.spec, overrides=args.overrides, backend=args.backend, check_engine=False)
    suggestion = earlier_right_size(p.spec, store=args.store)
    if suggestion is None:
        raise SweepError(f"--right-size: no finished run of sweep {p.spec.name!r} in this store measured a size "
                         "worth changing to; run it once (locally is fine), or drop --right-size")
    print(f"right-size: {suggestion.line()}", file=sys.stderr, flush=True)
    return suggestion.overrides


def _quiet_optuna() -> None:
    """Optuna logs every trial at INFO; the CLI shows its own round lines instead. (The library leaves Optuna's
    global verbosity alone: that is the caller's to set.)"""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _wait(run: Any) -> int:
    from batchsweep import display

    try:
        code: int = run.wait()
    except KeyboardInterrupt:
        print("\ncancelling: stopping running tasks...", file=sys.stderr, flush=True)
        run.cancel()
        print(f"cancelled; finish it later with: batchsweep resume {run.id}", file=sys.stderr)
        return 130
    display.print_outcome(run)
    return code


def cmd_estimate(args: argparse.Namespace) -> int:
    from batchsweep import display, planning

    p = planning.plan(args.spec, overrides=args.overrides, backend=args.backend, max_parallel=args.max_parallel,
                  check_engine=False, max_tasks=args.max_tasks)
    display.print_estimate(_estimate(p, args))
    return 0


def _estimate(p: Any, args: argparse.Namespace) -> Any:
    from batchsweep.estimate import estimate_plan

    if args.pilot is not None:
        print(f"pilot: running {min(args.pilot, len(p.tasks))} task(s) here to time them...", file=sys.stderr, flush=True)
    return estimate_plan(p, task_seconds=args.task_seconds, pilot=args.pilot, store=args.store)


def cmd_runs(args: argparse.Namespace) -> int:
    from batchsweep import catalog, display

    if args.action == "rm":
        from batchsweep import housekeeping

        if not args.ids:
            raise SweepError("runs rm: name the runs to delete, e.g. `batchsweep runs rm RUN_ID`")
        return _delete(housekeeping.rm_plan(args.ids, store=args.store), args)
    if args.action == "compact":
        from batchsweep.compact import compact

        if len(args.ids) > 1 or args.yes:
            raise SweepError("runs compact: one RUN at a time, without --yes")
        run = catalog.load_run(args.ids[0] if args.ids else None, store=args.store)
        _out(compact(run).line(run.id))
        return 0
    if args.ids or args.yes:
        raise SweepError("runs: RUN ids and --yes go with `runs rm`")
    display.print_runs(catalog.list_runs(store=args.store), store=args.store)
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from batchsweep import housekeeping

    return _delete(housekeeping.gc_plan(store=args.store, keep_last=args.keep_last, older_than=args.older_than), args)


def _delete(plan: Any, args: argparse.Namespace) -> int:
    from batchsweep import housekeeping

    lines = plan.lines()
    if not lines:
        _out("nothing to delete")
        return 0
    if not args.yes:
        for line in lines:
            _out(f"would delete {line}")
        _out("dry run: nothing was deleted; add --yes to delete")
        return 0
    housekeeping.execute(plan, local=args.store, say=_out)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from batchsweep import catalog, display

    run = catalog.load_run(args.run, store=args.store)
    if not args.watch:
        display.print_status(run)
        return 0
    try:
        display.watch_status(run)
    except KeyboardInterrupt:
        pass  # stops watching; the run goes on
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from batchsweep import catalog, display, results

    if args.sweep:
        from batchsweep.history import load_sweep

        if args.run:
            raise SweepError("results: give a RUN or --sweep NAME, not both")
        history = load_sweep(args.sweep, store=args.store)
        run, df = history.latest, history.results()
    else:
        run = catalog.load_run(args.run, store=args.store)
        df = run.results(refresh=args.refresh)
    notes = []
    if args.sort:
        df, how = results.sort_best_first(df, args.sort, ascending=args.ascending, metrics=results.metric_columns(run, df))
        notes.append(how)
    elif args.ascending is not None:
        raise SweepError("--asc/--desc need --sort COLUMN")
    fmt = args.format or _format_from_name(args.output)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    if fmt == "table" and not args.output:
        sort = args.sort.lstrip("+-") if args.sort and args.sort not in df.columns else args.sort
        display.print_table(df, run, wide=args.wide, columns=columns, sort=sort, notes=notes)
        return 0
    for note in notes:
        print(note, file=sys.stderr)
    if columns:
        display.check_columns(df, columns)
        df = df[columns]
    if fmt == "parquet" and not args.output:
        raise SweepError("--format parquet needs -o FILE (parquet is binary)")
    text = results.export(df, "csv" if fmt == "table" else fmt, args.output)
    if text is not None:
        sys.stdout.write(text)
    return 0


def _format_from_name(path: str | None) -> str:
    suffix = path.rsplit(".", 1)[-1].lower() if path and "." in path else ""
    return {"csv": "csv", "json": "json", "parquet": "parquet", "pq": "parquet"}.get(suffix, "table" if not path else "csv")


def cmd_logs(args: argparse.Namespace) -> int:
    import time

    from batchsweep import catalog

    if len(args.ids) > 2 or not args.ids[-1].lstrip("-").isdigit():
        raise SweepError(f"logs {' '.join(args.ids)}: give [RUN] TASK, e.g. `batchsweep logs 7` for task 7 "
                         "of the latest run")
    args.run, args.task = (args.ids[0] if len(args.ids) == 2 else None), int(args.ids[-1])
    import codecs

    run = catalog.load_run(args.run, store=args.store)
    shown = 0
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while True:
        # Decided before reading, so the last read after the task ended gets all of its output.
        done = not args.follow or run.store.read_status(run.id, args.task) is not None or not run.engine.poll().active
        for chunk in run.log_chunks(args.task, stderr=args.stderr, start=shown):  # streamed: any size
            sys.stdout.write(decoder.decode(chunk))
            shown += len(chunk)
        sys.stdout.flush()
        if done:
            sys.stdout.write(decoder.decode(b"", final=True))
            if not shown:
                print(f"task {args.task} of {run.id}: {_no_output_why(run, args.task, args.stderr)}", file=sys.stderr)
            return 0
        time.sleep(0.5)


def _no_output_why(run: Any, task: int, stderr: bool) -> str:
    state = run.states().get(task)
    name = "stderr" if stderr else "stdout"
    if state is not None and not run.store.read_status(run.id, task):
        if state.value == "pending":
            return "no output yet: it has not started (pending); `--follow` waits for it"
        if state.value == "running":
            return f"no {name} yet: it is running; `--follow` prints it as it comes"
        return f"no output: it ended as {state.value} without writing any (see `batchsweep status {run.id}`)"
    return f"it wrote nothing to {name}" + ("" if stderr else "; its stderr: add --stderr")


def cmd_resume(args: argparse.Namespace) -> int:
    from batchsweep import catalog

    run = catalog.load_run(args.run, store=args.store)
    if run.info.get("search"):
        _quiet_optuna()
    todo = run.resume(detach=args.detach)
    _out(run.id)
    if not todo:
        _out("nothing to resume: every task succeeded")
        return 0
    print(f"resuming {len(todo)} of {run.n_tasks} tasks", file=sys.stderr)
    if args.detach:
        return 0
    return _wait(run)


def cmd_cancel(args: argparse.Namespace) -> int:
    from batchsweep import catalog

    run = catalog.load_run(args.run, store=args.store)
    if not run.engine.poll().active:
        _out(f"{run.id} is not running; nothing to cancel")
        return 0
    unconfirmed = run.cancel()
    if unconfirmed:
        print(f"error: cancel of {run.id} requested, but {unconfirmed}; check again with "
              f"`batchsweep status {run.id}`", file=sys.stderr)
        return 1
    _out(f"cancelled {run.id}; resume it with: batchsweep resume {run.id}")
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    from batchsweep import catalog

    return _wait(catalog.load_run(args.run, store=args.store))


def cmd_init(args: argparse.Namespace) -> int:
    from batchsweep import starter

    path = starter.write_starter(args.script, output=args.output, force=args.force)
    _out(f"wrote {path}; edit the grid, then: batchsweep run {path}")
    return 0


def cmd_rerun(args: argparse.Namespace) -> int:
    from batchsweep import catalog
    from batchsweep.replay import rerun

    return rerun(catalog.load_run(args.run, store=args.store), args.task, directory=args.dir, shell=args.shell)


def cmd_diff(args: argparse.Namespace) -> int:
    from batchsweep import catalog
    from batchsweep.rundiff import diff

    a, b = catalog.load_run(args.run_a, store=args.store), catalog.load_run(args.run_b, store=args.store)
    for line in diff(a, b):
        _out(line)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from batchsweep import catalog

    if args.sweep:
        from batchsweep.history import load_sweep

        if args.run:
            raise SweepError("report: give a RUN or --sweep NAME, not both")
        history = load_sweep(args.sweep, store=args.store)
        run = history.latest
        metric, maximize = history.report(args.output, metric=args.metric, maximize=args.maximize)
    else:
        run = catalog.load_run(args.run, store=args.store)
        metric, maximize = run.report(args.output, metric=args.metric, maximize=args.maximize)
    if metric:
        _out(f"wrote {args.output} (metric: {metric}, {'maximize' if maximize else 'minimize'})")
    else:
        _out(f"wrote {args.output} (no numeric metric to plot: no task recorded one; see `batchsweep status {run.id}`)")
    return 0


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
        prefix = {logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.DEBUG: "debug: "}.get(record.levelno, "")
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
        # AWS failures (no credentials, endpoint unreachable, access denied) are the user's setup, not our bug;
        # any other botocore error (a malformed request of ours) keeps its traceback.
        if type(e).__module__.startswith(("botocore", "boto3")):
            from batchsweep.aws.clients import explain

            line = explain(e)
            if line is not None:
                print(f"error: {line.splitlines()[0]}", file=sys.stderr)
                return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
