"""The container player: what AWS Batch and ECS would do with a run's jobs, done on this machine.

Moto accepts Batch jobs but never runs them (Docker mode off), so the player reads each submitted job back
with DescribeJobs and runs its own command and environment here, once per array index
(`AWS_BATCH_JOB_ARRAY_INDEX`). Like the awslogs driver, it ships the container's stdout and stderr line by
line, as they are produced, to the job's CloudWatch log stream. `job_credentials` stand for the job role's
temporary credentials (ECS hands them to the container) and `log_credentials` for the execution role's (the
awslogs driver uses those).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from batchsweep.aws.record import AwsEngineSettings, AwsRecord
from batchsweep.emulator.zygote import Forked, shared_zygote
from batchsweep.errors import SweepError
from batchsweep.store.record import read_engine_record
from batchsweep.task.arrayslice import AWS_BATCH_VAR

STDERR_TAIL = 10
STOP_TIMEOUT_S = 30  # ECS's default stopTimeout: SIGKILL this long after SIGTERM
TERMINATE_POLL_S = 0.25  # how often `play` asks whether the jobs it plays were terminated
# What a container on Batch gets from outside its job definition: the endpoint and credentials (the job
# role's, on AWS) and the region. Played inside an image, a child sees these and the job's own environment,
# nothing else.
CONTAINER_AWS_VARS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                      "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION")
# An emulator served over TLS (`emulator serve --tls`) is trusted through AWS_CA_BUNDLE, a file on this
# machine: played inside an image, that file is mounted read-only here and the variable names it.
CONTAINER_CA_BUNDLE = "/etc/batchsweep/aws-ca-bundle.pem"
# What a container would not inherit from this shell: its credentials come from the job role.
_NOT_INHERITED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                  "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
# "1": a child played on the host is forked from this process's zygote (batchsweep.emulator.zygote: boto3 and
# the worker imported once) rather than started as a fresh interpreter, when the zygote accepts it. The test
# suite's.
FORK_VAR = "BATCHSWEEP_PLAY_FORK"


@dataclass(frozen=True)
class Child:
    """One container Batch would start: a plain job, or one child of an array job."""

    job_id: str  # <parent id>:<index> for an array child, as Batch names them
    command: list[str]  # as in the job definition; played on the host, `python` is this Python
    env: dict[str, str]
    log_group: str | None
    log_stream: str | None


@dataclass
class Played:
    child: Child
    exit_code: int | None = None  # None: killed by the player
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL))
    log_errors: list[str] = field(default_factory=list)  # CloudWatch refusing a line (e.g. AccessDenied)
    started: bool = True  # False: its job was terminated before Batch started it
    forked: bool = False  # True: forked from the player's zygote, not a fresh interpreter

    def describe(self) -> str:
        if not self.started:
            return f"child {self.child.job_id}: never started (its job was terminated)"
        how = "killed" if self.exit_code is None else f"exit code {self.exit_code}"
        tail = "".join(f"\n    {line}" for line in self.stderr_tail)
        text = f"child {self.child.job_id}: {how}" + (
            f"; last stderr lines:{tail}" if tail else "; no stderr"
        )
        if self.log_errors:
            text += f"\n    {len(self.log_errors)} line(s) not shipped to CloudWatch: {self.log_errors[0]}"
        return text


def children(run: Any, *, only: set[int] | None = None, session: Any = None,
             submission: int = -1) -> list[Child]:
    """Every child of the jobs of one submission (default: the latest; a resume or a search round adds one),
    array indices in `only` when given, as Batch would start them."""
    from batchsweep.aws.clients import make_client

    settings = run.record.engine_as(AwsEngineSettings)  # the engine's resolved settings
    batch = make_client("batch", session=session, profile=settings.profile, region=settings.region)
    # No engine.json: nothing was submitted (every task was reused from an earlier run); a damaged one: a
    # warning.
    record = read_engine_record(run, AwsRecord) or AwsRecord()
    found = []
    for sub in record.submissions[submission:][:1]:
        for job in sub.jobs:
            desc = batch.describe_jobs(jobs=[job.id])["jobs"][0]
            container = desc["container"]
            env = {e["name"]: e["value"] for e in container.get("environment", [])}
            command = list(container["command"])  # as the job definition says: `python` is the image's
            # awslogs ships to the job definition's group (moto leaves it out of DescribeJobs: the run's
            # group).
            options = (container.get("logConfiguration") or {}).get("options") or {}
            group = options.get("awslogs-group") or settings.log_group
            for index in range(job.size):
                if only is not None and index not in only:
                    continue
                child_env = dict(env, AWS_BATCH_JOB_ATTEMPT="1")
                job_id = job.id
                if job.size > 1:
                    # what the worker reads (batchsweep.task.arrayslice)
                    child_env[AWS_BATCH_VAR] = str(index)
                    job_id = f"{job.id}:{index}"
                child_env["AWS_BATCH_JOB_ID"] = job_id
                stream = (
                    batch.describe_jobs(jobs=[job_id])["jobs"][0].get("container", {}).get("logStreamName")
                )
                found.append(Child(job_id, command, child_env, group, stream))
    return found


class _LogShipper:
    """CreateLogStream once, then one PutLogEvents per line, in the order lines arrive (as awslogs does)."""

    def __init__(self, logs: Any, group: str | None, stream: str | None) -> None:
        self.logs, self.group, self.stream = logs, group, stream
        self.lock = threading.Lock()
        self.created = False

    def __call__(self, line: str) -> None:
        if self.logs is None or not self.group or not self.stream:
            return
        with self.lock:
            if not self.created:
                try:
                    self.logs.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
                except self.logs.exceptions.ResourceAlreadyExistsException:
                    pass
                self.created = True
            self.logs.put_log_events(logGroupName=self.group, logStreamName=self.stream,
                                     logEvents=[{"timestamp": int(time.time() * 1000), "message": line}])


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (a container's tasks run in their own sessions, but die with the
    container)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_container(proc: subprocess.Popen[bytes] | Forked) -> None:
    """SIGKILL the whole container: the worker and every process it started (no SIGTERM, no grace)."""
    for pid in [proc.pid, *_descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def play_child(child: Child, *, job_credentials: dict[str, str] | None = None, logs: Any = None,
               kill_when: Callable[[str], bool] | None = None, term_when: Callable[[str], bool] | None = None,
               timeout_s: float = 3600, image: str | None = None,
               terminated: threading.Event | None = None, fork: bool | None = None) -> Played:
    """Run one child here, or with `image` in a fresh container of that image. `kill_when(line)` true for a
    line of its output kills the container right there; `term_when(line)` stops it the way ECS stops a task (a
    spot reclaim, a cancel, a Batch timeout): SIGTERM to the container's first process, SIGKILL after
    STOP_TIMEOUT_S. `terminated` set (its job was terminated: TerminateJob) stops it the same way, or it never
    starts. `fork` (default: BATCHSWEEP_PLAY_FORK=1) forks a host child from the zygote when it can
    (`_start`)."""
    if terminated is not None and terminated.is_set():
        return Played(child, started=False)
    env = {k: v for k, v in os.environ.items() if not (job_credentials and k in _NOT_INHERITED)}
    env.update(child.env)
    env.update(job_credentials or {})
    if image is None:
        argv = [sys.executable if part == "python" else part for part in child.command]
        return _play(
            child,
            argv,
            env,
            logs=logs,
            kill_when=kill_when,
            term_when=term_when,
            timeout_s=timeout_s,
            terminated=terminated,
            fork=os.environ.get(FORK_VAR) == "1" if fork is None else fork,
        )
    # Inside the image the child sees the job's environment and what Batch adds (endpoint, credentials,
    # region).
    inside = {k: env[k] for k in CONTAINER_AWS_VARS if k in env}
    inside.update(child.env)
    inside.update(job_credentials or {})
    mounts = {}
    ca_bundle = env.get("AWS_CA_BUNDLE")
    if ca_bundle and "AWS_CA_BUNDLE" not in child.env:
        if not os.path.isfile(ca_bundle):
            raise SweepError(
                f"AWS_CA_BUNDLE={ca_bundle} is not a file: the container could not trust the endpoint"
            )
        mounts[os.path.abspath(ca_bundle)] = CONTAINER_CA_BUNDLE
        inside["AWS_CA_BUNDLE"] = CONTAINER_CA_BUNDLE
    with _container(image, inside, child.command, mounts=mounts) as argv:
        return _play(child, argv, dict(os.environ), logs=logs, kill_when=kill_when, term_when=term_when,
                     timeout_s=timeout_s, terminated=terminated)


@contextmanager
def _container(image: str, env: dict[str, str], command: list[str], *,
               mounts: dict[str, str] | None = None) -> Iterator[list[str]]:
    """`buildah run` of `command` in a new container of `image` (removed afterwards): chroot isolation, so no
    OCI runtime or cgroups are needed; the host's network, so it reaches an emulator on 127.0.0.1; the image's
    user and working directory; `mounts` (host file -> path inside) bound read-only. buildah reads the same
    storage configuration as the podman that built the image."""
    buildah = _buildah()
    name = f"batchsweep-play-{uuid.uuid4().hex[:12]}"
    created = subprocess.run(
        [buildah, "from", "--quiet", "--name", name, image], capture_output=True, check=False
    )
    if created.returncode != 0:
        detail = created.stderr.decode(errors="replace").strip().splitlines()
        raise SweepError(f"buildah from {image} failed: {detail[-1] if detail else created.returncode}; "
                         "is it built (`batchsweep image build SPEC`) in this machine's container storage?")
    try:
        yield [
            buildah,
            "run",
            "--isolation",
            "chroot",
            *(a for k, v in env.items() for a in ("-e", f"{k}={v}")),
            *(a for host, inside in (mounts or {}).items() for a in ("-v", f"{host}:{inside}:ro")),
            name,
            "--",
            *command,
        ]
    finally:
        subprocess.run([buildah, "rm", name], capture_output=True, check=False)


def _buildah() -> str:
    buildah = shutil.which("buildah")
    if buildah is None:
        raise SweepError("play --image needs buildah on PATH (Debian/Ubuntu: `apt-get install buildah`)")
    return buildah


def _play(
    child: Child,
    argv: list[str],
    env: dict[str, str],
    *,
    logs: Any,
    kill_when: Callable[[str], bool] | None,
    term_when: Callable[[str], bool] | None = None,
    timeout_s: float,
    terminated: threading.Event | None = None,
    fork: bool = False,
) -> Played:
    played = Played(child)
    ship = _LogShipper(logs, child.log_group, child.log_stream)
    proc = _start(argv, env, fork=fork)
    played.forked = isinstance(proc, Forked)
    killed = threading.Event()
    stopping = threading.Event()

    def stop() -> None:  # ECS: SIGTERM to PID 1, then SIGKILL once the task's stopTimeout has passed
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            kill_container(proc)

    def pump(pipe: IO[bytes], tail: deque[str] | None) -> None:
        for raw in iter(pipe.readline, b""):
            line = raw.decode(errors="replace").rstrip("\r\n")
            try:
                ship(line)
            except Exception as e:  # noqa: BLE001 - the container runs on whether or not its logs arrive
                played.log_errors.append(f"{type(e).__name__}: {e}")
            if tail is not None:
                tail.append(line)
            if kill_when is not None and not killed.is_set() and kill_when(line):
                killed.set()
                kill_container(proc)
            if term_when is not None and not stopping.is_set() and term_when(line):
                stopping.set()
                threading.Thread(target=stop, daemon=True).start()
        pipe.close()

    assert proc.stdout is not None and proc.stderr is not None
    pumps = [threading.Thread(target=pump, args=(proc.stdout, None), daemon=True),
             threading.Thread(target=pump, args=(proc.stderr, played.stderr_tail), daemon=True)]
    for thread in pumps:
        thread.start()

    def watch_terminate() -> None:  # the ECS agent stopping the task of a terminated job
        assert terminated is not None
        while proc.poll() is None:
            if terminated.wait(0.1):
                if not stopping.is_set():
                    stopping.set()
                    stop()
                return

    if terminated is not None:
        threading.Thread(target=watch_terminate, daemon=True).start()
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_container(proc)
        code = proc.wait()
    for thread in pumps:
        thread.join(timeout=10)
    played.exit_code = None if killed.is_set() else code
    return played


def _start(argv: list[str], env: dict[str, str], *, fork: bool) -> subprocess.Popen[bytes] | Forked:
    """The container's first process, its stdout and stderr piped here: with `fork`, forked from this
    process's zygote when it accepts the child (`python -m batchsweep.worker` with an environment its imports
    agree with; see batchsweep.emulator.zygote for what a fork shares), else a fresh interpreter."""
    if fork:
        shared = shared_zygote()
        if shared is not None and shared.accepts(argv, env):
            try:
                return shared.start(env, cwd=os.getcwd())
            except OSError:
                pass  # a fresh interpreter does the same, slower
    return subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def play(run: Any, *, only: set[int] | None = None, parallel: int = 4, session: Any = None,
         job_credentials: dict[str, str] | None = None, log_session: Any = None,
         kill_when: Callable[[str], bool] | None = None, term_when: Callable[[str], bool] | None = None,
         image: str | None = None, fork: bool | None = None) -> list[Played]:
    """Run the run's children here (at most `parallel` at once), or each in a fresh container of `image`,
    their output shipped to CloudWatch Logs with `log_session` (default: `session`, else the environment's
    credentials). Returns them in submission order.

    A job terminated meanwhile (TerminateJob: `batchsweep cancel`) is seen as Batch and ECS would act on it:
    its running containers are stopped (SIGTERM, SIGKILL after STOP_TIMEOUT_S), its children not yet started
    never start. Moto records the terminate only as the job's statusReason (its jobs "succeeded" at submit),
    which is what the player watches for. `fork`: see `play_child`."""
    from batchsweep.aws.clients import make_client

    if image is not None:
        _buildah()  # before anything starts
    found = children(run, only=only, session=session)
    settings = run.record.engine_as(AwsEngineSettings)  # the engine's resolved settings
    logs = make_client("logs", session=log_session or session, region=settings.region)
    batch = make_client("batch", session=session, profile=settings.profile, region=settings.region)
    terminated, done = threading.Event(), threading.Event()
    jobs = sorted({c.job_id.split(":")[0] for c in found})

    def watch() -> None:
        while jobs and not done.wait(TERMINATE_POLL_S):
            if any(j.get("statusReason") for j in batch.describe_jobs(jobs=jobs)["jobs"]):
                terminated.set()
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            return list(pool.map(lambda c: play_child(c, job_credentials=job_credentials, logs=logs,
                                                      kill_when=kill_when, term_when=term_when, image=image,
                                                      terminated=terminated, fork=fork),
                                 found))
    finally:
        done.set()
        watcher.join()
