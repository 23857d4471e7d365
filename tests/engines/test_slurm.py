"""The Slurm engine against a real one-node Slurm cluster (tests/slurm_fixtures.py), through the CLI as a
cluster user types it: `run` returns once the array is submitted, and later processes follow the run from the
store and squeue. (The conformance suite, tests/engines/test_conformance.py, covers results, failures,
timeouts, retries, cancel, a lost array task and resume on `slurm` too.)"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import batchsweep

TASK = '''
import argparse, json, os, time
p = argparse.ArgumentParser()
p.add_argument("--a", type=int)
p.add_argument("--wait_for", default="")
args = p.parse_args()
while args.wait_for and not os.path.exists(args.wait_for):
    time.sleep(0.1)
print(f"a={args.a}", flush=True)
json.dump({"double": 2 * args.a}, open("metrics.json", "w"))
'''


def project(tmp_path: Path, params: str, extra: str = "") -> Path:
    code = tmp_path / "code"
    code.mkdir()
    (code / "task.py").write_text(TASK)
    spec = code / "sweep.yaml"
    spec.write_text(textwrap.dedent(f"""
        name: slurmy
        script: task.py
        params: {params}
        backend: slurm
    """) + extra)
    return spec


def cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`batchsweep ARGS` as a process of its own (a shell of the user's), run in the project's directory."""
    return subprocess.run(
        [sys.executable, "-m", "batchsweep", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200"},
    )


def wait_for(predicate, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def strays(marker: str) -> list[str]:
    """Processes naming `marker` (the test's own directory) that Slurm did not start: a batchsweep left
    behind."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if marker not in cmdline:
                continue
            pid, ancestors = int(proc.name), []
            while pid > 1:  # under a slurmstepd: a job's process, not ours
                status = Path(f"/proc/{pid}/status").read_text()
                pid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
                ancestors.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except (OSError, StopIteration):
            continue
        if not any(a.startswith("slurmstepd") for a in ancestors):
            found.append(cmdline)
    return found


def test_run_returns_once_submitted_and_later_shells_follow_a_200_task_sweep_at_4_at_once(
    tmp_path, slurm_cluster
):
    gate = tmp_path / "go"
    spec = project(tmp_path, f"{{grid: {{a: {list(range(200))}}}, fixed: {{wait_for: '{gate}'}}}}",
                   "max_parallel: 4\n")
    started = cli("run", str(spec), cwd=spec.parent)
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.splitlines()[0]
    assert f"batchsweep wait {run_id}" in started.stdout

    # The tasks wait on the gate: nothing of batchsweep runs meanwhile but the array tasks Slurm started.
    assert strays(str(tmp_path)) == []
    store = spec.parent / ".batchsweep"
    wait_for(
        lambda: len(slurm_cluster.squeue()) == 4 and all(" RUNNING " in r for r in slurm_cluster.squeue()),
        "the four array tasks to run",
    )
    status = cli("status", run_id, cwd=spec.parent)
    assert status.returncode == 0, status.stderr
    assert "4 running (array tasks)" in status.stdout, status.stdout
    script = (store / "runs" / run_id / "engine" / "s0-0.sh").read_text()
    assert "#SBATCH --array=0-3%4\n" in script  # 200 tasks packed 50 to an array task, 4 at once

    gate.touch()
    waited = cli("wait", run_id, cwd=spec.parent, timeout=600)
    assert waited.returncode == 0, waited.stdout + waited.stderr
    results = cli("results", run_id, "--format", "csv", cwd=spec.parent)
    rows = [line.split(",") for line in results.stdout.strip().splitlines()]
    header, rows = rows[0], rows[1:]
    assert len(rows) == 200
    got = {
        int(r[header.index("a")]): (r[header.index("status")], int(r[header.index("double")])) for r in rows
    }
    assert got == {a: ("succeeded", 2 * a) for a in range(200)}
    workers = {r[header.index("worker")] for r in rows}
    assert len(workers) == 4, workers  # each array task ran its own 50
    assert slurm_cluster.squeue() == []


def test_a_pending_array_shows_slurms_reason_and_cancel_scancels_it(tmp_path, slurm_cluster):
    spec = project(tmp_path, "{grid: {a: [1, 2, 3]}}", "slurm: {extra: [--begin=now+1hour]}\n")
    started = cli("run", str(spec), cwd=spec.parent)
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.splitlines()[0]
    wait_for(
        lambda: "BeginTime" in "".join(slurm_cluster.squeue()), "Slurm to hold the array until its begin time"
    )
    status = cli("status", run_id, cwd=spec.parent)
    assert "array task(s) pending (BeginTime): it starts at the time --begin names" in status.stdout, (
        status.stdout
    )

    cancelled = cli("cancel", run_id, cwd=spec.parent)
    assert cancelled.returncode == 0, cancelled.stderr
    wait_for(lambda: slurm_cluster.squeue() == [], "scancel to end the array")
    run = batchsweep.load_run(run_id, store=spec.parent / ".batchsweep")
    assert set(run.results()["status"]) == {"cancelled"}


def pids_naming(marker: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def parent_of(pid: int) -> int:
    return int(next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("PPid:")))


def leaves(pids: list[int]) -> list[int]:
    """The processes of `pids` that are no other's parent."""
    parents = {parent_of(pid) for pid in pids}
    return [pid for pid in pids if pid not in parents]


def worker_of(pid: int) -> int:
    while pid > 1:
        pid = parent_of(pid)
        if "batchsweep.worker" in Path(f"/proc/{pid}/cmdline").read_text():
            return pid
    raise AssertionError("the task has no batchsweep worker above it")


def _scancel_in_its_order(slurm_cluster, run, first, worker):
    """scancel's SIGTERM as it may land: on `first` before the worker (0.5 s later); task 0's status once the
    array task has ended."""
    for pid in first:
        os.kill(pid, signal.SIGTERM)
    time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):  # a worker that took its task's end for a failure is gone
        os.kill(worker, signal.SIGTERM)
    wait_for(lambda: slurm_cluster.squeue() == [], "the array task to end")
    return run.store.read_status(run.id, 0)


def test_a_task_signalled_a_moment_before_its_worker_reads_as_cancelled(tmp_path, slurm_cluster):
    """`scancel` sends SIGTERM to every process of the job: the task's may land before its worker's (the
    worker then records a cancel, not the task's own failure)."""
    never = str(tmp_path / "never")
    spec = project(tmp_path, f"{{grid: {{a: [1]}}, fixed: {{wait_for: '{never}'}}}}")
    run = batchsweep.run(spec, store=spec.parent / ".batchsweep", detach=True)
    wait_for(lambda: pids_naming(never), "the task to start")
    (task,) = leaves(pids_naming(never))  # its reaper names the task's argv too
    worker = worker_of(task)
    status = _scancel_in_its_order(slurm_cluster, run, [task], worker)
    assert status is not None and status.state.value == "cancelled", status


def test_dry_run_shows_the_batch_script_with_resources_time_and_the_block(tmp_path):
    spec = project(tmp_path, "{grid: {a: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}}", textwrap.dedent("""
        resources: {vcpus: 1.5, memory_mib: 1024, gpus: 1}
        timeout: 1m
        retries: 1
        max_parallel: 3
        slurm: {partition: gpu, account: lab, qos: short, constraint: a100, extra: [--mail-type=END]}
    """))
    shown = cli("run", str(spec), "--dry-run", "--store", "shared store", cwd=spec.parent)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    output = spec.parent / "shared store" / "runs" / "RUN_ID" / "engine" / "s0-%A_%a.out"
    assert f'\n#SBATCH --output="{output}"\n' in out, out  # the store asked for, quoted for sbatch
    # 10 tasks at most 3 at once: 4 to an array task, 3 array tasks; each has 4 tasks x 2 attempts x (60 + 10)
    # s
    # + 120 s = 680 s of time, rounded up to the minute.
    for line in (
        "#SBATCH --array=0-2%3",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=1024M",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --time=0-00:12:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        "#SBATCH --qos=short",
        "#SBATCH --constraint=a100",
        "#SBATCH --mail-type=END",
        f"exec {sys.executable} -m batchsweep.worker",
    ):
        assert f"\n{line}\n" in out, (line, out)
    assert not (spec.parent / "shared store" / "runs").exists(), "a dry run wrote a run"


def test_slurm_tasks_per_job_is_kept_with_max_parallel_the_throttle_holds_the_cap(tmp_path):
    """`slurm: {tasks_per_job: 1}` with `max_parallel: 2` gave `--array=0-1%2` (6 tasks an array task): the
    asked k was overridden though `%2` already caps what runs at once."""
    spec = project(tmp_path, "{grid: {a: [1, 2, 3, 4, 5, 6]}}",
                   "max_parallel: 2\nslurm: {tasks_per_job: 1}\n")
    shown = cli("run", str(spec), "--dry-run", cwd=spec.parent)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "#SBATCH --array=0-5%2" in shown.stdout, shown.stdout


def test_status_of_a_cold_slurm_run_speaks_of_array_tasks_not_containers(tmp_path, slurm_cluster):
    spec = project(tmp_path, "{grid: {a: [1]}}")
    assert cli("run", str(spec), cwd=spec.parent).returncode == 0
    assert cli("wait", cwd=spec.parent, timeout=300).returncode == 0
    shown = cli("status", cwd=spec.parent)
    warm = [line for line in shown.stdout.splitlines() if line.startswith("warm")]
    assert warm and "array task" in warm[0] and "in this container" not in warm[0], shown.stdout


@pytest.mark.parametrize(("block", "says"), [
    ("slurm: {partiton: debug}", "slurm.partiton"),
    ("slurm: {time: soon}", "'soon' is not a Slurm time"),
    ("slurm: {extra: ['--array=0-9']}", "batchsweep sets --array itself"),
    ("slurm: {extra: ['--comment=a b']}", "one `--name=value`"),
])
def test_a_bad_slurm_block_is_one_line_and_exit_2_with_nothing_written(tmp_path, block, says):
    spec = project(tmp_path, "{grid: {a: [1]}}", block + "\n")
    refused = cli("run", str(spec), cwd=spec.parent)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert says in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert not (spec.parent / ".batchsweep" / "runs").exists()


def test_a_partition_the_cluster_lacks_is_refused_before_anything_is_written(tmp_path, slurm_cluster):
    spec = project(tmp_path, "{grid: {a: [1]}}", "slurm: {partition: nosuch}\n")
    refused = cli("run", str(spec), cwd=spec.parent)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "invalid partition" in refused.stderr.lower() and "slurm" in refused.stderr, refused.stderr
    assert not list((spec.parent / ".batchsweep").glob("runs/*/run.json"))
    assert slurm_cluster.squeue() == []


@pytest.mark.parametrize(("extra", "says"), [
    ("resources: {memory_mib: 64000}\n", "--mem=64000M (from resources.memory_mib)"),
    ("resources: {gpus: 1}\n", "--gres=gpu:1 (from resources.gpus)"),
    ("slurm: {partition: nosuch}\n", "--partition=nosuch (from slurm.partition)"),
])
def test_a_job_the_cluster_refuses_names_the_option_and_the_field_it_came_from(
    tmp_path, slurm_cluster, extra, says
):
    """The spec is README's Slurm example on a cluster without its GPU partition or memory: the one line
    says which field to change, not only Slurm's own words."""
    spec = project(tmp_path, "{grid: {a: [1]}}", extra)
    refused = cli("run", str(spec), cwd=spec.parent)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert says in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "sinfo" in refused.stderr, refused.stderr
    assert not list((spec.parent / ".batchsweep").glob("runs/*/run.json"))


def jobqueue_project(tmp_path, params: str, *, queue: str):
    """`project`'s sweep on the Dask backend, its workers dask_jobqueue.SLURMCluster jobs in `queue`."""
    spec = project(tmp_path, params)
    spec.write_text(spec.read_text().replace("backend: slurm", textwrap.dedent(f"""\
        backend: dask
        dask:
          cluster:
            class: dask_jobqueue.SLURMCluster
            kwargs: {{queue: {queue}, cores: 1, processes: 1, memory: 1GB, walltime: "00:10:00"}}
            scale: 2""")))
    return spec


def test_a_dask_jobqueue_slurmcluster_sweep_prints_no_traceback(tmp_path, slurm_cluster):
    pytest.importorskip("dask_jobqueue")
    spec = jobqueue_project(tmp_path, "{grid: {a: [1, 2, 3, 4, 5, 6]}}", queue="debug")
    done = cli("run", str(spec), cwd=spec.parent, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 succeeded" in done.stderr
    assert "ERROR" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    run = batchsweep.load_run(done.stdout.splitlines()[0], store=spec.parent / ".batchsweep")
    assert sorted(run.results()["double"]) == [2, 4, 6, 8, 10, 12]


def test_a_dask_jobqueue_cluster_whose_jobs_slurm_refuses_is_one_line_not_a_run_waiting_for_ever(
    tmp_path, slurm_cluster
):
    """README's dask-jobqueue example names `queue: normal`; on a cluster without that partition every
    sbatch is refused: the run must say so in one line, not print tracebacks and wait for workers."""
    pytest.importorskip("dask_jobqueue")
    spec = jobqueue_project(tmp_path, "{grid: {a: [1, 2]}}", queue="nosuch")
    refused = cli("run", str(spec), cwd=spec.parent, timeout=300)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "dask.cluster" in errors[0] and "partition" in errors[0], refused.stderr
    assert "Traceback" not in refused.stderr, refused.stderr
    assert slurm_cluster.squeue() == []


def test_resume_after_the_script_was_fixed_warns_that_slurm_reruns_the_shipped_code(tmp_path, slurm_cluster):
    """A user who fixes the script and resumes must be told the array tasks unpack the package of the run's
    start (README: `resume` runs the same code), not find the same failure again with no word."""
    spec = project(tmp_path, "{grid: {a: [1, 2]}}")
    script = spec.parent / "task.py"
    script.write_text(TASK + "\nif args.a == 2:\n    raise SystemExit('a=2 is broken')\n")
    started = cli("run", str(spec), cwd=spec.parent)
    assert started.returncode == 0, started.stdout + started.stderr
    assert cli("wait", cwd=spec.parent, timeout=300).returncode == 1
    script.write_text(TASK)  # the fix
    resumed = cli("resume", "--detach", cwd=spec.parent)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "has changed since run" in resumed.stderr and "runs the code package the run shipped" in (
        resumed.stderr), resumed.stderr
    cli("wait", cwd=spec.parent, timeout=300)


def test_a_warm_task_and_its_fork_server_signalled_before_their_worker_read_as_cancelled(
    tmp_path, slurm_cluster
):
    """scancel's SIGTERM reaches the task, its reaper and the fork server it was forked from (an array task of
    two tasks runs them warm) a moment before the worker: the worker still records a cancel."""
    never, marks = tmp_path / "never", tmp_path / "marks"
    marks.mkdir()
    spec = project(tmp_path, f"{{grid: {{a: [1, 2]}}, fixed: {{wait_for: '{never}'}}}}",
                   "slurm: {tasks_per_job: 2}\n")
    started = f"open('{marks}/' + str(args.a), 'w').write(str(os.getpid()))\n"  # the task's pid, as it starts
    (spec.parent / "task.py").write_text(TASK.replace("while args.wait_for", started + "while args.wait_for"))
    run = batchsweep.run(spec, store=spec.parent / ".batchsweep", detach=True)
    wait_for(lambda: (marks / "1").is_file() and (marks / "1").read_text(), "the task to start")
    task = int((marks / "1").read_text())
    reaper = parent_of(task)
    server = parent_of(reaper)
    worker = parent_of(server)
    assert "batchsweep.task.warmserver" in Path(f"/proc/{server}/cmdline").read_text()
    assert "batchsweep.worker" in Path(f"/proc/{worker}/cmdline").read_text()
    status = _scancel_in_its_order(slurm_cluster, run, [server, reaper, task], worker)
    assert status is not None and (status.state.value, status.warm) == ("cancelled", True), status
    assert run.store.read_status(run.id, 1) is None  # the array task's second task never started


def test_a_poll_reads_no_more_of_the_store_with_four_array_tasks_running_than_with_one(tmp_path, monkeypatch):
    """Which task each running array task is at comes from the statuses every reader reads anyway
    (`Progress.queues`), not from a status read per running array task on each poll."""
    from batchsweep.engines.slurm import commands

    ids = iter(range(100, 200))

    def slurm(argv, *, what, input_text=None):  # the cluster's answers, without a cluster
        if argv[0] == "scontrol":
            return "MaxArraySize = 1001\n"
        return f"{next(ids)}\n" if argv[:2] == ["sbatch", "--parsable"] else ""

    monkeypatch.setattr(commands, "slurm", slurm)
    spec = project(tmp_path, "{grid: {a: [1, 2, 3, 4, 5, 6, 7, 8]}}", "slurm: {tasks_per_job: 2}\n")
    run = batchsweep.run(spec, store=spec.parent / ".batchsweep", detach=True)
    run = batchsweep.load_run(run.id, store=spec.parent / ".batchsweep")
    engine = run.engine
    (job,) = [job.id for sub in engine._record().submissions for job in sub.jobs]
    reads: list[str] = []
    backend = run.store.backend
    read_bytes = backend.read_bytes
    monkeypatch.setattr(backend, "read_bytes", lambda key: reads.append(key) or read_bytes(key))

    def poll_reads(running: int) -> list[str]:
        rows = [commands.ArrayTask(job, i, "RUNNING", "None") for i in range(running)]
        monkeypatch.setattr(commands, "queued", lambda name: rows)
        engine._next_poll = 0.0
        reads.clear()
        engine.poll()
        return list(reads)

    poll_reads(1)  # the first poll reads the submission's slicing, once
    one = poll_reads(1)
    assert poll_reads(4) == one, one
    assert [i for i, state in run.states().items() if state.value == "running"] == [0, 2, 4, 6]
