"""`batchsweep rerun RUN TASK [--dir D] [--shell]`: replay one task of any run, local or remote, on this machine.

The task's directory is made again under D (default: a new temporary directory): `code-<sha>/` holds the run's
code package from the store, at its content hash (every run keeps one; a local run from before they did, or
one over `code.max_mib`, replays from its code directory as it is now, which is said, with a warning when that
directory's content has changed since), `work/` the staged inputs; the task's params,
argv and environment are the run's. The task then runs in the foreground with its output on the terminal, or
`--shell` starts $SHELL in `work/` with that environment instead. Nothing is written to the store.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from batchsweep.errors import SpecError
from batchsweep.runs.run import Run

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


def prepare(run: Run, index: int, *, directory: str | os.PathLike[str] | None = None) -> Replay:
    from batchsweep.planning import keys
    from batchsweep.task import remote, worker

    tasks = {t.index: t for t in run.tasks()}
    if index not in tasks:
        raise SpecError(f"task {index} does not exist in run {run.id} (tasks 0..{run.n_tasks - 1})")
    task, record = tasks[index], run.record
    base = Path(directory) if directory else Path(tempfile.mkdtemp(prefix=f"batchsweep-{run.id}-{index}-"))
    base.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    resolve: Callable[[str], Path]
    remote_run = record.inputs_map is not None  # its inputs were shipped to the store too (aws-batch)
    code_dir = _package(run, base, notes)
    if remote_run:
        resolve = remote.InputCache(run.store, record, base)
    else:
        base_dir = Path(record.base_dir)
        downloads = base / "inputs"

        def resolve(src: str) -> Path:
            return _s3_download(src, downloads / src.rsplit("/", 1)[-1]) if src.startswith("s3://") else base_dir / src

    if code_dir is None:
        if remote_run:
            raise SpecError(f"run {run.id}: its code package {(record.code_sha256 or '')[:12]} is not in {run.store.url} "
                            "any more; nothing to replay it with")
        code_dir = Path(record.code_dir)
        why = (f"its code package was {record.code_package}" if record.code_package else
               "its code package is gone from the store" if record.code_sha256 else
               "the run kept no code package (a local run from before they were kept)")
        notes.append(f"warning: replaying with {code_dir} as it is now, not as it was: {why}")
        try:
            from batchsweep.spec import schema as spec_mod

            spec_file = record.spec_file
            current = keys.code_hash(spec_mod.load(spec_file)) if spec_file and Path(spec_file).is_file() else None
        except Exception:  # noqa: BLE001 - only a warning depends on it
            current = None
        if current is not None and current != record.code_hash:
            notes.append(f"warning: the code in {code_dir} has changed since run {run.id} "
                         f"({record.code_hash[:12]} then, {current[:12]} now)")
    ctx = worker.context_from_run(record, code_dir=code_dir, memory_limit_mib=_memory_limit(record))
    work = base / "work"
    work.mkdir(exist_ok=True)
    worker._stage(task, work, resolve)
    return Replay(argv=worker.command(ctx, task), env=worker.task_env(ctx, task, work), work=work, notes=notes)


def _package(run: Run, base: Path, notes: list[str]) -> Path | None:
    """The run's code package from its store, unpacked under `base`; None when the run has none (a local run from
    before packages were kept, or one over code.max_mib) or it is gone from the store."""
    from batchsweep.task import remote

    sha = run.record.code_sha256
    if not sha or not run.store.backend.exists(run.store.code_key(sha)):
        return None
    code_dir = remote._code_dir(run.store, run.record, base)
    notes.append(f"code: the run's package {sha[:12]} from {run.store.url}, as it was when the run started")
    return code_dir


def rerun(run: Run, index: int, *, directory: str | os.PathLike[str] | None = None, shell: bool = False) -> int:
    """Replay the task in the foreground (or a shell in its directory); returns its exit code."""
    r = prepare(run, index, directory=directory)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    say(f"task {index} of {run.id} in {r.work}")
    for note in r.notes:
        say(note)
    say("command: " + " ".join(shlex.quote(a) for a in r.argv))
    if shell:
        program = os.environ.get("SHELL") or "/bin/sh"
        say(f"starting {program} in {r.work} with the task's environment; `exit` to leave")
        return subprocess.call([program], cwd=r.work, env=r.env)
    code = subprocess.call(r.argv, cwd=r.work, env=r.env)
    say(f"task {index} exited with code {code}")
    return code


def _memory_limit(record: RunRecord) -> int | None:
    """The memory limit the run's engine gave its tasks, so a replay runs under it too (none when the engine is
    not installed here)."""
    from batchsweep.errors import SweepError
    from batchsweep.registry import get_engine

    try:
        return get_engine(record.backend).memory_limit_mib(record)
    except SweepError:
        return None
