"""The commands that look at what runs did: status, results, logs, report, study, diff, rerun."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from batchsweep.cli.common import latest_run_argument, out, output_file, run_or_sweep
from batchsweep.errors import SweepError


def register(sub: Any, store: argparse.ArgumentParser) -> None:
    p = sub.add_parser("status", parents=[store], help="counts by state and the failed tasks' reasons")
    latest_run_argument(p)
    p.add_argument(
        "--watch",
        action="store_true",
        help="refresh every 2 s until the run ends, with each running task's latest step, value and best",
    )
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("results", parents=[store], help="one row per task with params and metrics")
    latest_run_argument(p)
    p.add_argument(
        "--sweep",
        metavar="NAME",
        help="every run of sweep NAME as one table: a row per distinct task, the latest success winning, "
        "with the run it came from and the code it ran (`code`)",
    )
    p.add_argument("--latest-code", action="store_true",
                   help="with --sweep: only the rows computed by the newest run's code")
    p.add_argument("--format", choices=("table", "csv", "json", "parquet"), default=None,
                   help="default: from -o FILE's extension (.csv, .json, .parquet), else a table")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of the terminal")
    p.add_argument(
        "--sort",
        metavar="COLUMN",
        help="sort by COLUMN, best first: names like loss, error, rmse, drawdown, time ascending, other "
        "metrics descending (-COL largest first, +COL smallest first); missing values last",
    )
    order = p.add_mutually_exclusive_group()
    order.add_argument(
        "--asc", dest="ascending", action="store_true", default=None, help="with --sort: smallest first"
    )
    order.add_argument("--desc", dest="ascending", action="store_false", help="with --sort: largest first")
    p.add_argument(
        "--wide",
        action="store_true",
        help="table: also the fixed and derived params, attempts, durations, times, worker and outputs",
    )
    p.add_argument(
        "--columns", metavar="A,B,C", help="only these columns, in this order (table, csv, json or parquet)"
    )
    p.add_argument("--refresh", action="store_true", help="re-read every task instead of the cached table")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("logs", parents=[store], help="a task's output",
                       usage="%(prog)s [-h] [--store PATH] [--stderr] [--follow] [RUN] TASK")
    p.add_argument("ids", nargs="+", metavar="[RUN] TASK",
                   help="run id or a unique part of one (default: the latest run), then the task index: "
                        "`logs 7` is task 7 of the latest run")
    p.add_argument("--stderr", action="store_true", help="stderr instead of stdout")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the task ends")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("report", parents=[store], help="a self-contained HTML report with plots")
    p.add_argument(
        "runs",
        nargs="*",
        metavar="RUN",
        help="run id or a unique part of one (default: the latest run); two or more: one page overlaying "
        "them, with what differs between them",
    )
    p.add_argument("--sweep", metavar="NAME",
                   help="plot every run of sweep NAME as one table (see results --sweep), its runs overlaid")
    p.add_argument(
        "-o", "--output", default="report.html", metavar="FILE", help="where to write (default: report.html)"
    )
    p.add_argument("--metric", help="the metric to rank by (default: picked and named in the report)")
    direction = p.add_mutually_exclusive_group()
    direction.add_argument("--maximize", dest="maximize", action="store_true", default=None,
                           help="higher is better (default: from the metric's name, else maximize)")
    direction.add_argument("--minimize", dest="maximize", action="store_false", help="lower is better")
    p.add_argument(
        "--serve",
        action="store_true",
        help="serve the report on http://127.0.0.1:PORT/ instead of writing a file; while the run goes the "
        "page refreshes itself (progress, running tasks' curves, prune decisions); Ctrl-C stops it",
    )
    p.add_argument(
        "--port", type=int, default=0, metavar="N", help="with --serve: the port (default: a free one)"
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("study", parents=[store],
                       help="write a run as an Optuna study (optuna.load_study, optuna-dashboard open it)")
    latest_run_argument(p)
    p.add_argument(
        "--to",
        required=True,
        metavar="STORAGE",
        help="an Optuna storage: a database URL (sqlite:///study.db) or a journal file (study.log)",
    )
    p.add_argument("--study-name", metavar="NAME", help="the study's name (default: the run id)")
    p.add_argument(
        "--metric", help="the trials' value (default: a search's metric, else picked as the report picks it)"
    )
    direction = p.add_mutually_exclusive_group()
    direction.add_argument(
        "--maximize", dest="maximize", action="store_true", default=None, help="higher is better"
    )
    direction.add_argument("--minimize", dest="maximize", action="store_false", help="lower is better")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser(
        "diff", parents=[store], help="what changed between two runs and which tasks' metrics moved"
    )
    p.add_argument("run_a", metavar="RUN_A", help="the earlier run (id or a unique part of one)")
    p.add_argument("run_b", metavar="RUN_B", help="the later run (id or a unique part of one)")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("rerun", parents=[store],
                       help="replay one task of any run (local or AWS) here, in the foreground, to debug it")
    p.add_argument("run", metavar="RUN", help="run id or a unique part of one")
    p.add_argument("task", metavar="TASK", type=int, help="the task's index")
    p.add_argument(
        "--dir", metavar="D", help="recreate the task's directory here (default: a new temporary one)"
    )
    p.add_argument("--shell", action="store_true",
                   help="start $SHELL in the task's directory with its environment instead of running it")
    p.add_argument(
        "--code",
        choices=("last", "original", "current"),
        default="last",
        help="last: the code the task last ran (default; a task a resume ran after the code was fixed "
        "ran the fixed code) · original: the code the run started with · current: the code "
        "directory as it is now",
    )
    p.set_defaults(func=cmd_rerun)


def cmd_status(args: argparse.Namespace) -> int:
    from batchsweep.cli import statusview
    from batchsweep.runs import catalog

    run = catalog.load_run(args.run, store=args.store)
    if not args.watch:
        statusview.print_status(run)
        return 0
    try:
        statusview.watch_status(run)
    except KeyboardInterrupt:
        pass  # stops watching; the run goes on
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from batchsweep.cli import tables
    from batchsweep.report import results

    output_file(args.output, example="results.csv")
    run, history = run_or_sweep(args, "results")
    if args.latest_code and history is None:
        raise SweepError("--latest-code needs --sweep NAME (one run has one code)")
    fmt = args.format or _format_from_name(args.output)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    if fmt == "parquet" and not args.output:
        raise SweepError("--format parquet needs -o FILE (parquet is binary)")
    written = "csv" if fmt == "table" and args.output else fmt
    if written in ("csv", "json") and history is None and (args.sort or args.ascending is None) \
            and run.store.is_local:
        from batchsweep.report import plainexport

        sort = (args.sort, args.ascending, lambda line: print(line, file=sys.stderr)) if args.sort else None
        try:  # without pandas; a store on S3 keeps the DataFrame path for its cache, which spares requests
            text = plainexport.export(run, written, args.output, columns, check=tables.check_columns,
                                      sort=sort)
        except plainexport.Unsupported:
            pass
        else:
            if text is not None:
                sys.stdout.write(text)
            return 0
    if fmt == "table" and not args.output and history is None and (args.sort or args.ascending is None) \
            and run.store.is_local:
        from batchsweep.report import plainexport

        said: list[str] = []
        sort = (args.sort, args.ascending, said.append) if args.sort else None
        try:  # without pandas, as csv and json above
            typed = plainexport.read(run, sort=sort)
        except plainexport.Unsupported:
            pass
        else:
            data = {name: values for name, (_, values) in typed.items()}
            key = args.sort.lstrip("+-") if args.sort and args.sort not in data else args.sort
            tables.print_table(data, run, wide=args.wide, columns=columns, sort=key, notes=said)
            return 0
    df = (
        history.results(latest_code=args.latest_code)
        if history is not None
        else run.results(refresh=args.refresh)
    )
    notes = []
    if args.sort:
        df, how = results.sort_best_first(
            df, args.sort, ascending=args.ascending, metrics=results.metric_columns(run, df)
        )
        notes.append(how)
    elif args.ascending is not None:
        raise SweepError("--asc/--desc need --sort COLUMN")
    if fmt == "table" and not args.output:
        sort = args.sort.lstrip("+-") if args.sort and args.sort not in df.columns else args.sort
        label = None if history is None else (
            f"sweep {history.name} ({len(history.runs)} run{'' if len(history.runs) == 1 else 's'})")
        tables.print_table(tables.columns_of(df), run, wide=args.wide, columns=columns, sort=sort,
                           notes=notes, label=label)
        return 0
    for note in notes:
        print(note, file=sys.stderr)
    if columns:
        tables.check_columns(df.columns, columns)
        df = df[columns]
    text = results.export(df, "csv" if fmt == "table" else fmt, args.output)
    if text is not None:
        sys.stdout.write(text)
    return 0


def _format_from_name(path: str | None) -> str:
    suffix = path.rsplit(".", 1)[-1].lower() if path and "." in path else ""
    return {"csv": "csv", "json": "json", "parquet": "parquet", "pq": "parquet"}.get(
        suffix, "table" if not path else "csv"
    )


def cmd_logs(args: argparse.Namespace) -> int:
    import time

    from batchsweep.runs import catalog

    if len(args.ids) > 2 or not args.ids[-1].lstrip("-").isdigit():
        raise SweepError(f"logs {' '.join(args.ids)}: give [RUN] TASK, e.g. `batchsweep logs 7` for task 7 "
                         "of the latest run")
    args.run, args.task = (args.ids[0] if len(args.ids) == 2 else None), int(args.ids[-1])
    import codecs

    from batchsweep.text import TerminalText

    run = catalog.load_run(args.run, store=args.store)
    shown = 0
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    # On a terminal a task's escape sequences are shown escaped (colours kept); piped, its bytes as written.
    safe = TerminalText() if sys.stdout.isatty() else None

    def show(text: str, final: bool = False) -> None:
        sys.stdout.write(safe(text, final=final) if safe is not None else text)

    while True:
        # Decided before reading, so the last read after the task ended gets all of its output.
        done = (
            not args.follow or run.store.read_status(run.id, args.task) is not None or not run.poll().active
        )
        for chunk in run.log_chunks(args.task, stderr=args.stderr, start=shown):  # streamed: any size
            show(decoder.decode(chunk))
            shown += len(chunk)
        sys.stdout.flush()
        if done:
            show(decoder.decode(b"", final=True), final=True)
            if not shown:
                print(
                    f"task {args.task} of {run.id}: {_no_output_why(run, args.task, args.stderr)}",
                    file=sys.stderr,
                )
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


def cmd_report(args: argparse.Namespace) -> int:
    output_file(args.output, example="report.html")
    if len(args.runs) > 1:
        return _compare_runs(args)
    args.run = args.runs[0] if args.runs else None
    run, history = run_or_sweep(args, "report")
    if args.serve:
        return _serve_report(args, run, history)
    if args.port:
        raise SweepError("--port needs --serve")
    metric, maximize = (history if history is not None else run).report(
        args.output, metric=args.metric, maximize=args.maximize
    )
    if metric:
        out(f"wrote {args.output} (metric: {metric}, {'maximize' if maximize else 'minimize'})")
    else:
        out(
            f"wrote {args.output} (no numeric metric to plot: no task recorded one; see `batchsweep status "
            f"{run.id}`)"
        )
    return 0


def _compare_runs(args: argparse.Namespace) -> int:
    from batchsweep.runs import catalog
    from batchsweep.runs.compare import compare

    if args.sweep or args.serve:
        raise SweepError(
            f"report: give two or more RUNs, or {'--sweep NAME' if args.sweep else '--serve'} with at "
            "most one, not both"
        )
    runs = [catalog.load_run(r, store=args.store) for r in args.runs]
    metric, maximize = compare(runs, args.output, metric=args.metric, maximize=args.maximize)
    how = (
        f"metric: {metric}, {'maximize' if maximize else 'minimize'}"
        if metric
        else "no numeric metric to plot"
    )
    out(f"wrote {args.output}: {len(runs)} runs compared ({how})")
    return 0


def _serve_report(args: argparse.Namespace, run: Any, history: Any) -> int:
    import threading

    if not 0 <= args.port <= 65535:
        raise SweepError(f"--port {args.port}: give a port from 1 to 65535, or 0 for a free one")
    try:
        server = (history or run).serve(port=args.port, metric=args.metric, maximize=args.maximize)
    except OSError as e:
        raise SweepError(
            f"--port {args.port}: cannot listen there ({e.strerror}); pick another or leave --port "
            "out for a free one"
        ) from None
    what = f"sweep {args.sweep}" if args.sweep else f"run {run.id}"
    out(f"serving the report of {what} at {server.url} (Ctrl-C stops)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    out("stopped serving the report")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from batchsweep.runs import catalog

    run = catalog.load_run(args.run, store=args.store)
    done = run.export_study(args.to, study_name=args.study_name, metric=args.metric, maximize=args.maximize)
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(done.states.items(), key=lambda kv: -kv[1]))
    out(f"wrote study {done.study_name!r} to {done.storage}: {sum(done.states.values())} trials ({states}), "
        f"{done.direction} {done.metric}")
    storage = (
        repr(done.storage)
        if "://" in done.storage
        else f"JournalStorage(JournalFileBackend({done.storage!r}))"
    )
    out(f"open it: optuna.load_study(study_name={done.study_name!r}, storage={storage})")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from batchsweep.runs import catalog
    from batchsweep.runs.diff import diff

    a, b = catalog.load_run(args.run_a, store=args.store), catalog.load_run(args.run_b, store=args.store)
    from batchsweep.text import printable

    for line in diff(a, b):  # file names, params, environment values: anyone's, so escaped
        out(printable(line))
    return 0


def cmd_rerun(args: argparse.Namespace) -> int:
    from batchsweep.runs import catalog
    from batchsweep.runs.replay import rerun

    return rerun(
        catalog.load_run(args.run, store=args.store),
        args.task,
        directory=args.dir,
        shell=args.shell,
        code=args.code,
    )
