"""`batchsweep rerun RUN TASK [--dir D] [--shell] [--code last|original|current]`: replay one task of any run,
local or remote, on this machine.

The task's directory is made again under D (default: a new temporary directory): `code-<sha>/` holds, from the
store at its content hash, the code the task last ran: the run's package (every run keeps one), or the one a
resume kept when it found the code changed before it ran the task again; `--code original` takes the run's,
`--code current` the code directory as it is now. A local run from before packages were kept, or one over
`code.max_mib`, replays from its code directory as it is now, which is said, with a warning when that
directory's content has changed since. `work/` holds the staged inputs; the task's params, argv and
environment are the run's. The task then runs in the foreground with its output on the terminal, or `--shell`
starts $SHELL in `work/` with that environment instead. Nothing is written to the store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from batchsweep.errors import SpecError
from batchsweep.runs.run import Run
from batchsweep.text import printable, shell_word

if TYPE_CHECKING:
    from batchsweep.store.record import RunRecord


@dataclass
class Replay:
    argv: list[str]
    env: dict[str, str]
    work: Path
    notes: list[str]


def _s3_download(ref: str, target: Path) -> Path:
    from batchsweep.aws.s3store import S3Backend, split_url

    bucket, key = split_url(ref)
    if ref.endswith("/"):  # a prefix: a directory, as the container's worker fetches it
        S3Backend(bucket, "").download_tree(key, target)
    else:
        S3Backend(bucket, "").download(key, target)
    return target


CODE_CHOICES = ("last", "original", "current")


def prepare(
    run: Run, index: int, *, directory: str | os.PathLike[str] | None = None, code: str = "last"
) -> Replay:
    """The task's directory made again, with `code`: `last` (the code the task last ran: a task run again by a
    resume after the code changed ran the changed code), `original` (the code the run started with) or
    `current` (the code directory as it is now)."""
    from batchsweep.files import open_dir
    from batchsweep.planning import keys
    from batchsweep.task import context, remote
    from batchsweep.task.staging import stage

    if code not in CODE_CHOICES:
        raise SpecError(f"--code {code}: give one of {', '.join(CODE_CHOICES)}")
    tasks = {t.index: t for t in run.tasks()}
    if index not in tasks:
        raise SpecError(f"task {index} does not exist in run {run.id} (tasks 0..{run.n_tasks - 1})")
    task, record = tasks[index], run.record
    base = (
        Path(directory).absolute()
        if directory
        else Path(tempfile.mkdtemp(prefix=f"batchsweep-{run.id}-{index}-"))
    )
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file, a device, a path below one, no permission
        raise SpecError(
            f"--dir {directory}: cannot be made a directory ({e.strerror}); name a new directory or "
            "leave --dir out for a temporary one"
        ) from None
    notes: list[str] = []
    resolve: Callable[[str], Path]
    remote_run = record.inputs_map is not None  # its inputs were shipped to the store too (aws-batch)
    code_dir = _code(run, index, base, notes, code)
    if remote_run:
        resolve = remote.InputCache(run.store, record, base)
    else:
        base_dir = Path(record.base_dir)
        downloads = base / "inputs"

        def resolve(src: str) -> Path:
            return (
                _s3_download(src, downloads / src.rsplit("/", 1)[-1])
                if src.startswith("s3://")
                else base_dir / src
            )

    if code_dir is None and code == "current":
        code_dir = Path(record.code_dir)
        if not code_dir.is_dir():
            raise SpecError(
                f"--code current: {code_dir}, where run {run.id} took its code, is not a directory "
                "here; replay with --code original"
            )
        notes.append(f"code: {code_dir} as it is now (--code current)")
    elif code_dir is None:
        if remote_run:
            raise SpecError(
                f"run {run.id}: its code package {(record.code_sha256 or '')[:12]} is not in {run.store.url} "
                "any more; nothing to replay it with"
            )
        code_dir = Path(record.code_dir)
        why = (f"its code package was {record.code_package}" if record.code_package else
               "its code package is gone from the store" if record.code_sha256 else
               "the run kept no code package (a local run from before they were kept)")
        notes.append(f"warning: replaying with {code_dir} as it is now, not as it was: {why}")
        try:
            from batchsweep.spec.reader import load as load_spec

            spec_file = record.spec_file
            current = (
                keys.code_hash(load_spec(spec_file)) if spec_file and Path(spec_file).is_file() else None
            )
        except Exception:  # noqa: BLE001 - only a warning depends on it
            current = None
        if current is not None and current != record.code_hash:
            notes.append(f"warning: the code in {code_dir} has changed since run {run.id} "
                         f"({record.code_hash[:12]} then, {current[:12]} now)")
    ctx = context.context_from_run(record, code_dir=code_dir, memory_limit_mib=_memory_limit(record))
    work = base / "work"
    work.mkdir(exist_ok=True)
    work_fd = open_dir(str(work))
    try:
        stage(task, work_fd, resolve)
    finally:
        os.close(work_fd)
    return Replay(
        argv=context.command(ctx, task), env=context.task_env(ctx, task, work), work=work, notes=notes
    )


def _code(run: Run, index: int, base: Path, notes: list[str], code: str) -> Path | None:
    """The code package `code` names, unpacked under `base`; None for `current`, and when the package is not
    there (a local run from before packages were kept, one over code.max_mib, or gone from the store)."""
    from datetime import datetime

    if code == "current":
        return None
    record = run.record
    if code == "last" and record.code_changes:
        status = run.statuses().get(index)
        change = record.code_ran_by(status.started_at if status else None)
        if change is not None:
            when = datetime.fromtimestamp(change.at).astimezone().isoformat(timespec="seconds")
            why = (
                f"code: the code the task last ran, {change.code_hash[:12]}, as a resume found it at {when} "
                "(--code original replays the code the run started with)"
            )
            found = _package(run, change.code_sha256, base, notes, why)
            if found is not None or not change.code_sha256:
                return found
    return _package(
        run,
        record.code_sha256,
        base,
        notes,
        f"code: the run's package {(record.code_sha256 or '')[:12]} from {run.store.url}, as it was when "
        "the run started" + (" (--code original)" if code == "original" else ""),
    )


def _package(run: Run, sha: str | None, base: Path, notes: list[str], note: str) -> Path | None:
    """Package `sha` from the run's store, unpacked under `base`; None when it is not there."""
    from batchsweep.task import remote

    if not sha or not run.store.backend.exists(run.store.code_key(sha)):
        return None
    code_dir = remote.code_dir(run.store, run.record.model_copy(update={"code_sha256": sha}), base)
    notes.append(note)
    return code_dir


def rerun(run: Run, index: int, *, directory: str | os.PathLike[str] | None = None, shell: bool = False,
          code: str = "last") -> int:
    """Replay the task in the foreground (or a shell in its directory) with `code` (`prepare`); returns its
    exit code."""
    r = prepare(run, index, directory=directory, code=code)

    def say(line: str) -> None:  # a param value in the command line may hold escape sequences: shown escaped
        print(printable(line), file=sys.stderr, flush=True)

    say(f"task {index} of {run.id} in {r.work}")
    for note in r.notes:
        say(note)
    say("command: " + " ".join(map(shell_word, r.argv)))  # pasted into a shell: the same values
    if shell:
        program = os.environ.get("SHELL") or "/bin/sh"
        say(f"starting {program} in {r.work} with the task's environment; `exit` to leave")
        return subprocess.call([program], cwd=r.work, env=r.env)
    exit_code = subprocess.call(r.argv, cwd=r.work, env=r.env)
    say(f"task {index} exited with code {exit_code}")
    return exit_code


def _memory_limit(record: RunRecord) -> int | None:
    """The memory limit the run's engine gave its tasks, so a replay runs under it too (none when the engine
    is not installed here)."""
    from batchsweep.errors import SweepError
    from batchsweep.registry import get_engine

    try:
        return get_engine(record.backend).memory_limit_mib(record)
    except SweepError:
        return None
