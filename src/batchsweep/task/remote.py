"""The worker's entry point on a remote machine (an AWS Batch container, a Slurm array task):
`python -m batchsweep.worker`.

Environment (set by the engine at submit; parameters never travel in it, only a pointer to the run):
    BATCHSWEEP_STORE         the store holding the run (s3://BUCKET/PREFIX)
    BATCHSWEEP_RUN_ID        the run
    BATCHSWEEP_SUBMISSION    which submission (the store's submissions/<n>.json lists its task indices)
    BATCHSWEEP_CHILD_OFFSET  this array job's first child number (arrays hold at most 10,000 children)
    AWS_BATCH_JOB_ARRAY_INDEX  set by Batch for array children (or Kubernetes' JOB_COMPLETION_INDEX, Slurm's
                               SLURM_ARRAY_TASK_ID: `batchsweep.task.arrayslice` maps the index to this
                               child's tasks)

Each child runs its share of the submission's tasks one after another, skipping tasks that already have a
succeeded status (so a retried or resumed child never repeats finished work), and exits with the last failing
task's exit code so Batch's retry rules see it. On SIGTERM (spot reclaim, cancel, Batch timeout) it stops the
running task and uploads what it has, marked with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from batchsweep.model import State, TaskStatus
from batchsweep.store.core import PackEntry, Store
from batchsweep.store.record import RunRecord, ShippedInput
from batchsweep.task import reaper
from batchsweep.task.arrayslice import Slicing, child_number
from batchsweep.task.logprefix import prefix
from batchsweep.task.warm import open_log
from batchsweep.task.worker import Launcher, ProcessRegistry, context_from_run, execute_task

if TYPE_CHECKING:
    from batchsweep.task.warm import WarmServer

SIGTERM_REASON = "stopped by SIGTERM (spot interruption, cancel or Batch timeout)"
MAX_LINE = 64 * 1024  # longer lines are cut in pieces (a CloudWatch event holds at most 256 KiB)
PUMP_JOIN_S = 5.0


class TeedProcess:
    """A task whose stdout and stderr go, line by line as produced, both to its log files and (prefixed with
    the task index) to the container's stdout, which the awslogs driver ships to CloudWatch: a task whose
    container dies before uploading anything can still be read there."""

    _out_lock = threading.Lock()  # one line at a time on the container's stdout, whichever task wrote it

    def __init__(
        self, argv: list[str], *, cwd: Path, env: dict[str, str], stdout: Path, stderr: Path
    ) -> None:
        index = int(env.get("BATCHSWEEP_TASK_INDEX", "-1"))
        pipes: dict[str, Any] = {
            "cwd": cwd,
            "env": env,
            "stdin": subprocess.DEVNULL,
            "stdout": subprocess.PIPE,
            "stderr": subprocess.PIPE,
        }
        self._popen: reaper.Supervised | subprocess.Popen[bytes] = (
            reaper.spawn(argv, **pipes) if reaper.can_supervise()  # nothing it starts outlives it
            else reaper.start_checked(argv, **pipes))
        popen = self._popen.reaper if isinstance(self._popen, reaper.Supervised) else self._popen
        assert popen.stdout is not None and popen.stderr is not None
        self._pumps = [
            threading.Thread(target=self._pump, args=(popen.stdout, stdout, prefix(index)), daemon=True),
            threading.Thread(target=self._pump, args=(popen.stderr, stderr, prefix(index, stderr=True)),
                             daemon=True),
        ]
        for pump in self._pumps:
            pump.start()

    @classmethod
    def _pump(cls, pipe: IO[bytes], path: Path, tag: bytes) -> None:  # noqa: N805 - also called unbound
        out = sys.stdout.buffer
        with open_log(path) as log:
            for line in iter(lambda: pipe.readline(MAX_LINE), b""):
                log.write(line)
                log.flush()
                with cls._out_lock:
                    out.write(tag + (line if line.endswith(b"\n") else line + b"\n"))
                    out.flush()
        pipe.close()

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    @property
    def usage(self) -> tuple[float, float] | None:
        """What the task's tree used, from its reaper as it ended (`reaper.Supervised.usage`)."""
        return getattr(self._popen, "usage", None)

    def wait(self, timeout: float | None = None) -> int:
        code = self._popen.wait(timeout=timeout)
        # The output is complete once the pipes close; a child the task left behind may hold them open, and
        # it is killed with the task's process group right after this returns.
        for pump in self._pumps:
            pump.join(timeout=PUMP_JOIN_S)
        return code


def launch_teed(
    argv: list[str], *, cwd: Path, env: dict[str, str], stdout: Path, stderr: Path
) -> TeedProcess:
    return TeedProcess(argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr)


class WarmTeedProcess:
    """A task forked by the child's warm-start server (`batchsweep.task.warm`), its output teed as a cold
    task's is: the forked task writes into two FIFOs, and the same pumps copy each line to its log file and,
    prefixed, to the container's stdout."""

    warm = True  # (`TaskStatus.warm`)

    def __init__(self, server: WarmServer, argv: list[str], *, cwd: Path, env: dict[str, str], stdout: Path,
                 stderr: Path) -> None:
        index = int(env.get("BATCHSWEEP_TASK_INDEX", "-1"))
        self._fifos = Path(tempfile.mkdtemp(prefix="batchsweep-fifo-"))
        pipes = [self._fifos / "stdout", self._fifos / "stderr"]
        for fifo in pipes:
            os.mkfifo(fifo)
        self._pumps = [
            threading.Thread(target=self._pump, args=(pipes[0], stdout, prefix(index)), daemon=True),
            threading.Thread(
                target=self._pump, args=(pipes[1], stderr, prefix(index, stderr=True)), daemon=True
            ),
        ]
        for pump in self._pumps:
            pump.start()
        try:
            self._task = server.launch(argv, cwd=cwd, env=env, stdout=pipes[0], stderr=pipes[1])
        except OSError:
            for fifo in pipes:  # no writer will come: open and close one, so each pump sees the end
                with open(fifo, "wb"):
                    pass
            self._join()
            raise

    @staticmethod
    def _pump(fifo: Path, path: Path, tag: bytes) -> None:
        with open(fifo, "rb") as pipe:  # returns once the forked task opens its end
            TeedProcess._pump(pipe, path, tag)

    def _join(self) -> None:
        for pump in self._pumps:
            pump.join(timeout=PUMP_JOIN_S)
        shutil.rmtree(self._fifos, ignore_errors=True)

    @property
    def pid(self) -> int:
        return self._task.pid

    @property
    def returncode(self) -> int | None:
        return self._task.returncode

    @property
    def usage(self) -> tuple[float, float] | None:
        """What the forked task's tree used, as the fork server reaped its reaper."""
        return getattr(self._task, "usage", None)

    def wait(self, timeout: float | None = None) -> int:
        code = self._task.wait(timeout=timeout)
        self._join()
        return code


def warm_launcher(ctx: Any, *, warm: str, n_tasks: int) -> tuple[Launcher, WarmServer | None]:
    """The child's launcher: warm (one import of the script's imports, a fork per task) unless the spec says
    `warm: false` (`warm` is `warm.mode`), when the child runs more than one task and the script allows it
    (`auto`: and the fork server finds it safe); else cold."""
    from batchsweep.task.warm import cold_because, server_for

    if warm == "off" or n_tasks < 2:
        return cold_because("the spec says warm: false" if warm == "off" else
                            "one task per container or array task gains nothing from it", launch_teed), None
    started = server_for(ctx, warm=warm, n_tasks=n_tasks)
    if isinstance(started, str):
        print(f"batchsweep: warm start: {started}; running cold", file=sys.stderr, flush=True)
        return cold_because(started, launch_teed), None
    server = started

    def launch(argv: list[str], *, cwd: Path, env: dict[str, str], stdout: Path, stderr: Path) -> Any:
        if not server.alive:
            return cold_because("the fork server ended during the run", launch_teed)(
                argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr)
        return WarmTeedProcess(server, argv, cwd=cwd, env=env, stdout=stdout, stderr=stderr)

    return launch, server


def _fetch_and_extract(store: Store, key: str, target: Path, scratch: Path) -> None:
    """A tar.gz from the store unpacked into `target`, streamed through a file on disk (never whole in
    memory)."""
    from batchsweep.aws.codepkg import extract_file

    archive = scratch / f".{target.name}.tar.gz"
    store.backend.download(key, archive)
    try:
        extract_file(archive, target)
    finally:
        archive.unlink(missing_ok=True)


def code_dir(store: Store, record: RunRecord, scratch: Path) -> Path:
    """The run's code package unpacked under `scratch` (fetched once)."""
    sha = record.code_sha256
    if not sha:
        raise RuntimeError(f"run {record.run_id}: its run.json names no code package (code_sha256)")
    target = scratch / f"code-{sha[:16]}"
    if not target.exists():
        _fetch_and_extract(store, store.code_key(sha), target, scratch)
    return target


class InputCache:
    """Inputs of the tasks this child runs, downloaded once each."""

    def __init__(self, store: Store, record: RunRecord, scratch: Path) -> None:
        self.store = store
        self.refs: dict[str, ShippedInput] = record.inputs_map or {}
        # A run on a local store (Slurm: a shared filesystem) ships no inputs: they are read where the spec
        # is.
        self.shared_dir = Path(record.base_dir) if store.is_local else None
        self.dir = scratch / "inputs"
        self.done: dict[str, Path] = {}

    def __call__(self, ref: str) -> Path:
        if ref in self.done:
            return self.done[ref]
        name = Path(ref.rstrip("/")).name
        target = self.dir / str(len(self.done)) / name
        if ref.startswith("s3://"):
            from batchsweep.aws.s3store import S3Backend, split_url

            bucket, key = split_url(ref)
            if ref.endswith("/"):  # a prefix: a directory of every object under it
                S3Backend(bucket, "").download_tree(key, target)
            else:
                S3Backend(bucket, "").download(key, target)
        elif ref not in self.refs and self.shared_dir is not None:
            return self.shared_dir / ref
        else:
            entry = self.refs[ref]
            if entry.dir:
                _fetch_and_extract(self.store, entry.key, target, target.parent)
            else:
                self.store.backend.download(entry.key, target)
        self.done[ref] = target
        return target


def main() -> int:
    env = os.environ
    store = Store.open(
        env["BATCHSWEEP_STORE"], aws_region=env.get("AWS_REGION") or env.get("BATCHSWEEP_REGION")
    )
    run_id = env["BATCHSWEEP_RUN_ID"]
    info = store.run_info(run_id)
    record = RunRecord.of_run(run_id, info)
    slicing = Slicing.from_record(
        store.read_json(store.submission_key(run_id, int(env.get("BATCHSWEEP_SUBMISSION", "0"))))
    )
    child = child_number(env)
    indices = slicing.tasks_of(child)
    registry = ProcessRegistry()
    reaper.become_subreaper()  # a task's setsid descendants come back to this process to be killed
    signal.signal(signal.SIGTERM, lambda *_: registry.cancel_all(SIGTERM_REASON))
    worker = env.get("AWS_BATCH_JOB_ID") or _slurm_job(env) or f"child-{child}"
    # Slurm counts requeues (a node failure, preemption) where Batch counts attempts.
    batch_attempt = int(env.get("AWS_BATCH_JOB_ATTEMPT") or int(env.get("SLURM_RESTART_COUNT") or 0) + 1)
    exit_code = 0
    summary = summary_name(int(env.get("BATCHSWEEP_SUBMISSION", "0")), child, batch_attempt)
    if batch_attempt > 1:  # an earlier attempt's summary is older than what this one runs: supersede it
        store.write_pack(run_id, f"{summary}~start", ())  # (store.current_packs; the job role cannot delete)
    finished: dict[int, TaskStatus] = {}
    with tempfile.TemporaryDirectory(prefix="batchsweep-") as tmp:
        scratch = Path(tmp)
        ctx = context_from_run(record, code_dir=code_dir(store, record, scratch))
        tasks = {t.index: t for t in store.tasks(run_id)}
        resolve = InputCache(store, record, scratch)
        from batchsweep.task.warm import mode as warm_mode

        launcher, server = warm_launcher(ctx, warm=warm_mode(record.spec.warm), n_tasks=len(indices))
        try:
            exit_code = _run_tasks(
                ctx,
                store,
                tasks,
                indices,
                registry=registry,
                worker=worker,
                scratch=scratch,
                resolve=resolve,
                batch_attempt=batch_attempt,
                launcher=launcher,
                finished=finished,
            )
        finally:
            if server is not None:
                server.close()
    write_summary(store, run_id, summary, finished)
    if registry.cancelled.is_set():
        return 143
    return exit_code


def _slurm_job(env: os._Environ[str]) -> str | None:
    """`12_3` for Slurm's array task 3 of job 12 (None outside Slurm)."""
    if env.get("SLURM_ARRAY_JOB_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '0')}"
    return env.get("SLURM_JOB_ID")


def _run_tasks(
    ctx: Any,
    store: Store,
    tasks: dict[int, Any],
    indices: list[int],
    *,
    registry: ProcessRegistry,
    worker: str,
    scratch: Path,
    resolve: InputCache,
    batch_attempt: int,
    launcher: Launcher,
    finished: dict[int, TaskStatus],
) -> int:
    """The child's tasks one after another; the exit code Batch sees (the last failing task's)."""
    run_id, exit_code = ctx.run_id, 0
    for index in indices:
        if registry.cancelled.is_set():
            break
        previous = store.read_status(run_id, index, packs=False)
        if previous is not None and previous.state.ok:
            finished[index] = previous
            continue
        status = finished[index] = execute_task(ctx, tasks[index], store, worker=worker,
                                                scratch=scratch / "tasks", registry=registry,
                                                resolve_input=resolve, infra_retries=batch_attempt - 1,
                                                launcher=launcher)
        if not status.state.ok:
            exit_code = status.exit_code if status.exit_code and status.exit_code > 0 else 1
    return exit_code


def summary_name(submission: int, child: int, attempt: int) -> str:
    return f"s{submission:04d}-c{child:06d}-a{attempt}"


def write_summary(store: Store, run_id: str, name: str, finished: dict[int, TaskStatus]) -> None:
    """One object with the statuses and metrics of the tasks this child finished, after their own files:
    reading a run's results costs a request per child, not several per task. A task's own files stay the truth
    for a task no summary covers (a child killed before this point, a run still going)."""
    if not finished:
        return
    metrics = store.read_metrics(run_id, [i for i, s in finished.items() if s.state is not State.CANCELLED],
                                packs=False)
    store.write_pack(run_id, name, (PackEntry(s, metrics.get(i)) for i, s in sorted(finished.items())))
