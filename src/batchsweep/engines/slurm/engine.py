"""The Slurm engine: its checks before a run, the submit (one sbatch per array job), and what later shells ask
of a run (poll from the store and squeue, cancel, a task's output from its array task's output file)."""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from batchsweep.engines.base import (
    Engine,
    Progress,
    RunHandle,
    keep_code_package,
    read_engine_record,
    write_engine_record,
)
from batchsweep.engines.slurm import commands
from batchsweep.engines.slurm.script import batch_script, refusal, sbatch_options
from batchsweep.engines.slurm.settings import (
    ArrayJob,
    SlurmBlock,
    SlurmEngineSettings,
    SlurmRecord,
    Submission,
)
from batchsweep.errors import EngineUnavailable, SpecError, SweepError
from batchsweep.model import State
from batchsweep.task.arrayslice import Slicing, tasks_per_child

if TYPE_CHECKING:
    from batchsweep.model import Task
    from batchsweep.spec.schema import Spec
    from batchsweep.store.core import Store

RUNNING = ("RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING")
# What a pending array task's reason means to the user, and what to do (`status`, `wait`).
PENDING_ADVICE = {
    "JobArrayTaskLimit": "held back by max_parallel, as asked",
    "BeginTime": "it starts at the time --begin names",
    "Priority": "other jobs come first; they start as the cluster frees up",
    "Resources": "waiting for nodes with the requested CPUs/memory/GPUs to free up",
    "QOSMaxJobsPerUserLimit": "your QOS caps jobs per user; they start as yours finish (or lower "
    "max_parallel)",
    "AssocMaxJobsLimit": "your account caps running jobs; they start as yours finish",
    "AssocGrpCpuLimit": "your account's CPU limit is reached; they start as its jobs finish",
    "PartitionTimeLimit": "the time asked is over the partition's limit: lower `timeout:`/slurm.time, or "
    "choose another slurm.partition; cancel and resume",
    "ReqNodeNotAvail": "the nodes it needs are down or reserved (`sinfo`)",
    "PartitionDown": "the partition is down (`sinfo`); ask the cluster's admins",
    "BadConstraints": "no node has this slurm.constraint / resources; cancel, fix them, resume",
}


def job_name(run_id: str) -> str:
    return f"batchsweep-{run_id}"


class SlurmEngine(Engine):
    name = "slurm"
    block = "slurm"
    settings_model = SlurmBlock
    engine_settings_model = SlurmEngineSettings
    record_model: ClassVar[type[SlurmRecord]] = SlurmRecord
    live_code = False  # every array task unpacks the code package kept in the store at submit (a resume too)
    detaches = True  # Slurm runs the tasks: `run` returns once they are submitted
    gpus = True  # `--gres=gpu:N` (whole GPUs)

    def __init__(self, run: RunHandle) -> None:
        super().__init__(run)
        self.settings = run.record.engine_as(SlurmEngineSettings)
        self._last: Progress | None = None
        self._next_poll = 0.0
        self._interval = 1.0
        self._slicings: dict[int, Slicing] = {}  # by submission: written before its sbatch, never changed

    # -- before a run ----------------------------------------------------------------------------
    @classmethod
    def resolved(cls, settings: Any) -> SlurmEngineSettings:
        found = super().resolved(settings)
        assert isinstance(found, SlurmEngineSettings)
        return found

    @classmethod
    def block_of(cls, spec: Spec) -> SlurmBlock:
        block = cls.settings_of(spec.slurm)
        assert isinstance(block, SlurmBlock)
        return block

    @classmethod
    def settings_for(cls, spec: Spec, *, max_array_size: int | None = None) -> SlurmEngineSettings:
        """The spec's block as run.json records it (MaxArraySize: the cluster's, or Slurm's default)."""
        settings = SlurmEngineSettings(**cls.block_of(spec).model_dump(), python=sys.executable)
        return settings.model_copy(update={"max_array_size": max_array_size}) if max_array_size else settings

    @classmethod
    def check(cls, spec: Spec, tasks: Sequence[Task]) -> SlurmEngineSettings:
        """The block, the cluster's MaxArraySize, and `sbatch --test-only` of the first array job's script:
        a bad partition, account, QOS or time is refused before anything is written."""
        import tempfile

        from batchsweep.spec.schema import parse_duration

        settings = cls.settings_for(spec, max_array_size=commands.max_array_size())
        k = cls.tasks_per_array_task(max(1, len(tasks)), spec, settings, task_seconds=None)
        script = cls.script_text(spec, settings, run_id=f"{spec.name}-check", store_url="/tmp/store",
                                 n_tasks=max(1, len(tasks)), k=k)
        with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="batchsweep-check-") as f:
            f.write(script)
            f.flush()
            try:
                commands.slurm(["sbatch", "--test-only", f.name], what="sbatch --test-only")
            except EngineUnavailable:
                raise
            except SweepError as e:
                reason = str(e).removeprefix("slurm: sbatch --test-only: ")
                reason = reason.removeprefix("sbatch: error: ").removeprefix("allocation failure: ")
                timeout_s = parse_duration(spec.timeout) if spec.timeout else None
                options = sbatch_options(spec, settings, k=k, timeout_s=timeout_s)
                raise SweepError(refusal(reason, settings, options)) from None
        return settings

    @staticmethod
    def tasks_per_array_task(
        n: int, spec: Spec, settings: SlurmEngineSettings, *, task_seconds: float | None
    ) -> int:
        """k, the tasks each array task runs: `slurm.tasks_per_job` as given (the array's `%max_parallel`
        throttle holds the cap, so it needs no fewer array tasks), else packed as on every engine."""
        if settings.tasks_per_job:
            return max(1, min(settings.tasks_per_job, n))
        return tasks_per_child(n, max_parallel=spec.max_parallel, tasks_per_job=None,
                               task_seconds=task_seconds)

    @classmethod
    def script_text(
        cls,
        spec: Spec,
        settings: SlurmEngineSettings,
        *,
        run_id: str,
        store_url: str,
        n_tasks: int,
        k: int,
        submission: int = 0,
        offset: int = 0,
        size: int | None = None,
    ) -> str:
        from batchsweep.spec.schema import parse_duration

        children = -(-n_tasks // k)
        size = size or min(children, settings.max_array_size)
        from batchsweep.store.core import Store

        output = str(Path(store_url) / Store.engine_file_key(run_id, f"s{submission}-%A_%a.out"))
        timeout_s = parse_duration(spec.timeout) if spec.timeout else None
        return batch_script(
            run_id=run_id,
            store_url=store_url,
            submission=submission,
            offset=offset,
            size=size,
            max_parallel=spec.max_parallel,
            options=sbatch_options(spec, settings, k=k, timeout_s=timeout_s),
            output=output,
            python=settings.python or sys.executable,
        )

    @classmethod
    def preview(cls, spec: Spec, tasks: Sequence[Task], *, store: Store) -> str | None:
        """The first array job's batch script, as a submit of this spec would keep it (the run id a
        placeholder)."""
        settings = cls.settings_for(spec)
        n = max(1, len(tasks))
        k = cls.tasks_per_array_task(n, spec, settings, task_seconds=None)
        return cls.script_text(spec, settings, run_id="RUN_ID", store_url=str(Path(store.url).resolve()),
                               n_tasks=n, k=k)

    @classmethod
    def run_store(cls, settings: Any, default: Store) -> Store:
        if not default.is_local:
            raise SpecError(
                f"backend slurm: the store {default.url} is not a directory; Slurm's nodes read the "
                "run from a store on the shared filesystem (--store DIR)"
            )
        return default

    @classmethod
    def prepare(cls, spec: Spec, store: Store, info: dict[str, Any]) -> dict[str, Any]:
        """The code package in the store: the array tasks run it, so an edit mid-sweep changes nothing
        submitted."""
        kept = keep_code_package(spec, store, Path(info["code_dir"]))
        if not kept.get("code_sha256"):
            raise SpecError(
                f"backend slurm: the code package was {kept.get('code_package')}; the array tasks run "
                "it, so raise code.max_mib or leave big files out with code.exclude"
            )
        return kept

    # -- a run -----------------------------------------------------------------------------------
    def _record(self) -> SlurmRecord:
        return read_engine_record(self.run, self.record_model) or SlurmRecord(engine=self.name)

    def submit(self, indices: Sequence[int], *, detach: bool) -> None:
        run, store, spec = self.run, self.run.store, self.run.spec
        record = self._record()
        n = len(record.submissions)
        k = self.tasks_per_array_task(len(indices), spec, self.settings,
                                      task_seconds=run.record.median_task_s)
        slicing = Slicing.of(indices, k)
        store.write_json(store.submission_key(run.id, n), slicing.to_record())
        store_url = str(Path(store.url).resolve())
        submission = Submission(n=n, tasks_per_child=k, submitted_at=time.time())
        record.submissions.append(submission)
        store.local_path(store.engine_file_key(run.id, "x")).parent.mkdir(exist_ok=True)  # Slurm writes there
        try:
            for j, (offset, size) in enumerate(slicing.array_jobs(self.settings.max_array_size)):
                script = self.script_text(spec, self.settings, run_id=run.id, store_url=store_url,
                                          n_tasks=len(indices), k=k, submission=n, offset=offset, size=size)
                key = store.engine_file_key(run.id, f"s{n}-{j}.sh")
                store.backend.write_bytes(key, script.encode())
                out = commands.slurm(["sbatch", "--parsable", str(store.local_path(key))],
                                     what=f"sbatch refused array job {j} of submission {n}")
                submission.jobs.append(
                    ArrayJob(id=out.strip().split(";")[0], offset=offset, size=size, script=key)
                )
                write_engine_record(run, record)  # after every sbatch: `cancel` finds what went out
        except BaseException:
            commands.cancel([job.id for job in submission.jobs])  # a half-submitted run is not started
            raise
        self._next_poll = 0.0

    def poll(self) -> Progress:
        now = self.clock.monotonic()
        if self._last is not None and now < self._next_poll:
            return self._last
        record = self._record()
        jobs = {job.id: (sub, job) for sub in record.submissions for job in sub.jobs}
        rows = [row for row in commands.queued(job_name(self.run.id)) if row.job in jobs]
        units = Counter("running" if row.state in RUNNING else "pending" for row in rows)
        progress = Progress(
            active=bool(rows),
            queues=self._running_slices(rows, jobs),
            notes=self._notes(rows),
            missing=State.LOST,
            units=dict(units),
            unit_name="array tasks",
        )
        self._last = progress
        self._interval = min(15.0, self._interval * 1.3)  # squeue is asked less and less often in a long run
        self._next_poll = now + self._interval * random.uniform(0.8, 1.2)
        return progress

    def _running_slices(self, rows: list[commands.ArrayTask],
                        jobs: dict[str, tuple[Submission, ArrayJob]]) -> tuple[tuple[int, ...], ...]:
        """The tasks of each running array task: it runs them in order, so the first without a status is the
        one it is at (`Progress.queues`: found among the statuses every reader reads anyway). A
        submission's slicing is read once (it never changes), so a poll reads no more of the store however
        many array tasks run."""
        slices = []
        for row in rows:
            if row.state not in RUNNING:
                continue
            sub, job = jobs[row.job]
            slices.append(tuple(self._slicing(sub.n).tasks_of(job.offset + row.index)))
        return tuple(slices)

    def _slicing(self, n: int) -> Slicing:
        if n not in self._slicings:
            store = self.run.store
            self._slicings[n] = Slicing.from_record(store.read_json(store.submission_key(self.run.id, n)))
        return self._slicings[n]

    def _notes(self, rows: list[commands.ArrayTask]) -> tuple[str, ...]:
        """Why array tasks wait, while none runs (a throttle by max_parallel is no news)."""
        if not rows or any(row.state in RUNNING for row in rows):
            return ()
        reasons = Counter(row.reason for row in rows if row.reason not in ("None", "JobArrayTaskLimit"))
        if not reasons:
            return ()
        reason, count = reasons.most_common(1)[0]
        advice = PENDING_ADVICE.get(reason.split(",")[0], "see `squeue --me` and ask the cluster's admins")
        return (f"{count} array task(s) pending ({reason}): {advice}",)

    def cancel(self) -> str | None:
        commands.cancel([job.id for sub in self._record().submissions for job in sub.jobs])
        self._next_poll = 0.0
        return None

    # -- a task's output ------------------------------------------------------------------------
    def _output_files(self, index: int) -> list[Path]:
        """The output files of the array tasks that ran task `index` (one per submission that had it)."""
        store = self.run.store
        files = []
        for sub in self._record().submissions:
            child = self._slicing(sub.n).child_of(index)
            if child is None:
                continue
            for job in sub.jobs:
                if job.offset <= child < job.offset + job.size:
                    name = f"s{sub.n}-{job.id}_{child - job.offset}.out"
                    files.append(store.local_path(store.engine_file_key(self.run.id, name)))
        return [f for f in files if f.is_file() and not f.is_symlink()]

    def _task_lines(self, index: int) -> Iterator[tuple[bool, str]]:
        from batchsweep.task.logprefix import parse

        for path in self._output_files(index):
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    parsed = parse(line.rstrip("\n"))
                    if parsed is not None and parsed[0] == index:
                        yield parsed[1], parsed[2]

    def logs(self, index: int, *, stderr: bool = False) -> Iterator[str] | None:
        """What a task printed so far, from its array task's output file (the worker copies each line
        there)."""
        if not self._output_files(index):
            return None
        return (text + "\n" for from_stderr, text in self._task_lines(index) if from_stderr == stderr)

    def last_output(self, index: int) -> str | None:
        from batchsweep.text import said

        last = None
        for _, text in self._task_lines(index):
            if line := said(text):
                last = line
        return last

    def failure_reasons(self) -> dict[int, str]:
        """Slurm's own line for array tasks it ended (time limit, cancel, node failure), mapped to their
        tasks."""
        store, reasons = self.run.store, {}
        for sub in self._record().submissions:
            slicing = self._slicing(sub.n)
            for job in sub.jobs:
                for child in range(job.size):
                    path = store.local_path(
                        store.engine_file_key(self.run.id, f"s{sub.n}-{job.id}_{child}.out")
                    )
                    reason = _slurm_reason(path)
                    if reason:
                        for index in slicing.tasks_of(job.offset + child):
                            reasons[index] = reason
        return reasons


def _slurm_reason(path: Path) -> str | None:
    """`*** JOB 12 ON node CANCELLED AT ... DUE TO TIME LIMIT ***` from an output file, shortened."""
    import re

    if not path.is_file() or path.is_symlink():
        return None
    found = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("slurmstepd") and "***" in line:
                m = re.search(r"\*\*\* (?:JOB|STEP) \S+ ON \S+ (\w+)(?: AT \S+)?(.*?)\s*\*\*\*", line)
                found = (
                    " ".join(filter(None, [m.group(1).lower(), m.group(2).strip().lower()]))
                    if m
                    else line.strip()
                )
    return f"array task {found} (Slurm)" if found else None


