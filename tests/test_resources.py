"""`resources:` on this machine: GPU leases, vCPU slots, memory reservations and limits, measured usage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import write_spec

import batchsweep
from batchsweep.engines.local.leases import Leases, detect_gpus
from batchsweep.errors import SpecError
from batchsweep.task.usage import GpuMemory, UsageSampler

PROBE = Path(__file__).parent / "scripts" / "resource_probe.py"


def _overlaps(df, key: str | None = None) -> int:
    """The most tasks running at once (sharing the same `key` value, when given)."""
    events = []
    for _, row in df.iterrows():
        group = row[key] if key else None
        events += [(row["start"], 1, group), (row["end"], -1, group)]
    running: Counter = Counter()
    peak = 0
    for _t, delta, group in sorted(events, key=lambda e: (e[0], e[1])):
        running[group] += delta
        peak = max(peak, running[group])
    return peak


def probe(tmp_path, params: str, extra: str = ""):
    """Run resource_probe.py over `params` (a YAML flow mapping) with `extra` spec lines; its results
    table."""
    spec = write_spec(tmp_path, textwrap.dedent(f"""
        name: probe
        script: {PROBE}
        params: {params}
        metrics: {{stdout: last}}
    """) + extra)
    return batchsweep.run(spec, store=tmp_path / "store", progress=False).results()


def test_gpu_tasks_get_one_device_each_and_never_share_one(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCHSWEEP_GPUS", "0,1")
    df = probe(
        tmp_path, "{grid: {i: [0, 1, 2, 3, 4, 5]}, fixed: {hold: 0.4}}", "resources: {gpus: 1, vcpus: 0.25}\n"
    )
    assert set(df["status"]) == {"succeeded"}
    assert set(df["cuda"]) <= {"gpu:0", "gpu:1"} and (df["cuda"] == df["nvidia"]).all()
    assert sorted(df["gpu"]) == sorted(c.removeprefix("gpu:") for c in df["cuda"])
    assert _overlaps(df, "cuda") == 1  # one task per device at a time
    assert _overlaps(df) <= 2


def test_a_gpu_fraction_lets_tasks_share_a_device_up_to_its_share(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCHSWEEP_GPUS", "7")
    df = probe(
        tmp_path,
        "{grid: {i: [0, 1, 2, 3, 4, 5]}, fixed: {hold: 0.6}}",
        "resources: {gpus: 0.5, vcpus: 0.1}\n",
    )
    assert set(df["cuda"]) == {"gpu:7"}
    assert _overlaps(df) == 2


def test_asking_for_more_gpus_than_the_machine_has_is_one_line_before_anything_runs(tmp_path):
    spec = write_spec(tmp_path, f"""
        name: toomany
        script: {PROBE}
        params: {{grid: {{i: [0, 1]}}}}
        resources: {{gpus: 2}}
    """)
    env = {**os.environ, "BATCHSWEEP_GPUS": "0"}
    out = subprocess.run([sys.executable, "-m", "batchsweep", "run", str(spec)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "resources.gpus: 2 per task" in out.stderr and "BATCHSWEEP_GPUS" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / ".batchsweep" / "runs").exists() or not any(
        (tmp_path / ".batchsweep" / "runs").iterdir()
    )


@pytest.mark.parametrize(
    ("params", "gpus", "backend", "says"),
    [
        (
            "{grid: {i: [0], _g: [1, 3]}}",
            '"{_g}"',
            "local",
            "resources.gpus: 3 per task, but this machine's GPUs: 2",
        ),
        ("{grid: {i: [0], _g: [1, 1.5]}}", '"{_g}"', "local", "a task's _g=1.5 is not a GPU count"),
        ("{grid: {i: [0], _g: [one]}}", '"{_g}"', "local", "a task's _g='one' is not a GPU count"),
        ("{grid: {i: [0]}}", '"{_g}"', "local", "placeholder {_g} names no param; params are: i"),
        ("{grid: {i: [0]}}", '"g"', "local", "'g' is neither a number nor a {param} placeholder"),
        (
            "{grid: {i: [0], _g: [1]}}",
            '"{_g}"',
            "slurm",
            "backend slurm gives every task of a run the same GPUs",
        ),
    ],
)
def test_per_task_gpus_that_cannot_run_are_one_line_before_anything_runs(
    tmp_path, params, gpus, backend, says
):
    spec = write_spec(tmp_path, f"""
        name: pertask
        script: {PROBE}
        params: {params}
        resources: {{gpus: {gpus}}}
        backend: {backend}
    """)
    env = {**os.environ, "BATCHSWEEP_GPUS": "0,1"}
    out = subprocess.run([sys.executable, "-m", "batchsweep", "run", str(spec)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert says in out.stderr
    assert not (tmp_path / ".batchsweep" / "runs").exists() or not any(
        (tmp_path / ".batchsweep" / "runs").iterdir()
    )


def test_vcpus_take_that_many_slots(tmp_path):
    df = probe(
        tmp_path, "{grid: {i: [0, 1, 2, 3]}, fixed: {hold: 0.5}}", f"resources: {{vcpus: {os.cpu_count()}}}\n"
    )
    assert set(df["status"]) == {"succeeded"}
    assert _overlaps(df) == 1


def test_a_task_over_its_memory_is_killed_with_that_reason_and_the_others_finish(tmp_path):
    df = probe(tmp_path, "{list: [{i: 0, alloc_mib: 400, hold: 120}, {i: 1, alloc_mib: 0, hold: 0.2}]}",
               "resources: {memory_mib: 150}\nretries: 2\n").set_index("i")
    assert df.loc[0, "status"] == "failed"
    assert df.loc[0, "error"] == "out of memory (limit 150 MiB)"
    assert df.loc[0, "attempts"] == 1  # another attempt would end the same way
    assert df.loc[0, "duration_s"] < 60  # killed when seen over, far before the 120 s it would hold
    assert df.loc[1, "status"] == "succeeded"


def test_peak_memory_and_cpu_time_are_recorded_per_task(tmp_path):
    df = probe(
        tmp_path,
        "{list: [{i: 0, alloc_mib: 200, hold: 1.0, busy: 0}, {i: 1, alloc_mib: 0, hold: 0.1, busy: 0.8}]}",
    ).set_index("i")
    assert 190 <= df.loc[0, "peak_rss_mib"] <= 400
    assert df.loc[1, "peak_rss_mib"] < 100
    # 0.8 s of CPU burnt; /proc is sampled every 0.5 s, so up to one interval at the very end may go unseen
    assert df.loc[1, "cpu_s"] >= 0.25
    assert df.loc[0, "cpu_s"] < df.loc[1, "cpu_s"]
    assert "gpu" not in df.columns


def test_the_quick_samples_walk_the_task_tree_without_reading_every_process(monkeypatch):
    """The first samples of a task read its leader and descendants only (a short warm task's main cost was a
    read of every process of the machine): the same members as the whole scan, a setsid grandchild
    included."""
    from batchsweep.task import usage

    leader = subprocess.Popen(
        ["sh", "-c", "sleep 30 & setsid sh -c 'sleep 30 & wait' & wait"], start_new_session=True
    )
    whole: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while len(whole) < 4 and time.monotonic() < deadline:  # sh, its sleep, the setsid sh, its sleep
            time.sleep(0.05)
            whole = usage.tree(leader.pid, usage._read_procs())
        assert len(whole) == 4
        read: list[str] = []
        real = usage._read_proc
        monkeypatch.setattr(usage, "_read_proc", lambda name: read.append(name) or real(name))
        assert usage.tree(leader.pid, usage._descendants(leader.pid)) == whole
        assert sorted(map(int, read)) == sorted(whole)  # nothing else of the machine was read
    finally:
        for pid in whole | {leader.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        leader.wait()


def test_detection_prefers_the_override_then_the_runners_own_visible_devices():
    assert detect_gpus({"BATCHSWEEP_GPUS": "0, 2,3"}) == ["0", "2", "3"]
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "1,3"}) == ["1", "3"]
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_whole_gpu_leases_are_exclusive_and_waiters_wake_on_release():
    leases = Leases(gpus_per_task=2, gpu_ids=["0", "1", "2"], memory_mib=None)
    assert leases.parallel() == 1
    first = leases.acquire()
    assert first is not None and len(first.gpus) == 2
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(leases.acquire()))
    waiter.start()
    waiter.join(0.3)
    assert got == []  # one GPU left: not enough
    leases.release(first)
    waiter.join(5)
    assert got and len(got[0].gpus) == 2


def test_memory_reservations_wait_for_room_but_one_task_always_runs():
    leases = Leases(gpus_per_task=0, gpu_ids=[], memory_mib=600, available_mib=1000)
    first = leases.acquire()
    cancelled = threading.Event()
    cancelled.set()
    assert leases.acquire(cancelled) is None  # 1200 MiB would not fit: it waits (here: until cancelled)
    leases.release(first)
    assert leases.acquire() is not None


def test_fractional_gpus_above_one_are_refused():
    with pytest.raises(SpecError, match="resources.gpus: 1.5"):
        Leases.for_spec(gpus=1.5, memory_mib=None, environ={"BATCHSWEEP_GPUS": "0,1"})


def test_after_a_measured_run_the_aws_dry_run_suggests_a_smaller_size_and_right_size_applies_it(tmp_path):
    spec = write_spec(tmp_path, f"""
        name: sizing
        script: {PROBE}
        params: {{grid: {{i: [0, 1]}}, fixed: {{alloc_mib: 100, hold: 1.5}}}}
        metrics: {{stdout: last}}
        resources: {{vcpus: 2, memory_mib: 8192}}
    """)
    env = {**os.environ, "CI": "true"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "batchsweep", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    before = cli("run", str(spec), "--backend", "aws-batch", "--dry-run")
    assert before.returncode == 0 and "right-size" not in before.stdout  # nothing measured yet
    # locally, with the AWS sizes in the spec
    assert cli("run", str(spec), "--max-parallel", "1").returncode == 0
    dry = cli("run", str(spec), "--backend", "aws-batch", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    line = next(x for x in dry.stdout.splitlines() if x.startswith("right-size"))
    assert (
        "`resources: {vcpus: 0.25, memory_mib: 512}`" in line
        and "would cut the estimated AWS cost by 89%" in line
    )
    sized = cli("run", str(spec), "--backend", "aws-batch", "--dry-run", "--right-size")
    assert sized.returncode == 0, sized.stderr
    assert "0.25 vCPU, 512 MiB" in sized.stdout


def test_right_size_without_a_measured_run_is_one_line_exit_2(tmp_path):
    spec = write_spec(tmp_path, f"""
        name: unmeasured
        script: {PROBE}
        params: {{grid: {{i: [0, 1]}}}}
    """)
    out = subprocess.run([sys.executable, "-m", "batchsweep", "run", str(spec), "--right-size"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "--right-size: no finished run of sweep 'unmeasured'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


class FakeNvml(types.ModuleType):
    """Stands in for `pynvml` (nvidia-ml-py) at the import boundary: devices whose process lists are computed
    by `listing(device, pid_environ)` from the machine's real processes."""

    class Proc:
        def __init__(self, pid: int, mib: float | None) -> None:
            self.pid = pid
            self.usedGpuMemory = None if mib is None else int(mib * 2**20)

    def __init__(self, devices: int, listing) -> None:
        super().__init__("pynvml")
        self.devices = devices
        self.listing = listing
        self.inits = 0
        self.calls = 0

    def nvmlInit(self) -> None:
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.inits -= 1

    def nvmlDeviceGetCount(self) -> int:
        return self.devices

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list:
        self.calls += 1
        return [self.Proc(pid, mib) for pid, mib in self.listing(handle)]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list:
        raise RuntimeError("NVMLError_NotSupported")  # as on a datacenter GPU


def test_gpu_memory_is_the_peak_over_the_task_tree_on_every_device_and_ignores_other_processes(monkeypatch):
    leader = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                               "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
                               "print(c.pid, flush=True); time.sleep(30)"],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        child = int(leader.stdout.readline())
        leader_mib = iter([100, 300, 200])

        def listing(device):
            if device == 0:  # the leader grows then shrinks; a stranger holds more than anyone
                return [(leader.pid, next(leader_mib, 200)), (os.getpid(), 999), (child, None)]
            return [(child, 50)]

        fake = FakeNvml(2, listing)
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        sampler = UsageSampler(leader.pid, gpu=True).start()
        deadline = time.monotonic() + 120
        while fake.calls < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        usage = sampler.stop()
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()
    # 300 on device 0 + 50 on device 1 at the peak; the stranger not counted
    assert usage.gpu_mem_mib == 350.0
    assert usage.peak_rss_mib is not None
    assert fake.inits == 0  # NVML shut down as often as it was started


def test_without_nvml_gpu_memory_is_not_measured_and_nothing_fails(monkeypatch):
    # `import pynvml` raises ImportError, as without the package
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert GpuMemory.open() is None
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"], start_new_session=True)
    usage = UsageSampler(proc.pid, gpu=True).start()
    proc.wait()
    assert usage.stop().gpu_mem_mib is None

    broken = FakeNvml(1, lambda device: [])
    broken.nvmlInit = lambda: (_ for _ in ()).throw(RuntimeError("NVMLError_DriverNotLoaded"))
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    assert GpuMemory.open() is None  # installed but no driver


def test_each_task_records_its_peak_gpu_memory_in_results(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCHSWEEP_GPUS", "0,1")

    # every process of ours that was given this device holds 256 MiB per device number + 1
    def listing(device):
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"CUDA_VISIBLE_DEVICES={device}".encode() in environ and b"BATCHSWEEP_TASK_INDEX" in b" ".join(
                environ
            ):
                found.append((int(pid), 256 * (device + 1)))
        return found

    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(2, listing))
    df = probe(
        tmp_path, "{grid: {i: [0, 1, 2, 3]}, fixed: {hold: 0.5}}", "resources: {gpus: 1, vcpus: 0.25}\n"
    )
    assert set(df["status"]) == {"succeeded"}
    expected = df["gpu"].map({"0": 256.0, "1": 512.0})
    assert list(df["gpu_mem_mib"]) == list(expected)


def test_a_gpu_run_without_nvml_has_no_gpu_memory_column_and_succeeds(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCHSWEEP_GPUS", "0")
    monkeypatch.setitem(sys.modules, "pynvml", None)
    df = probe(tmp_path, "{grid: {i: [0, 1]}, fixed: {hold: 0.1}}", "resources: {gpus: 1, vcpus: 0.25}\n")
    assert set(df["status"]) == {"succeeded"} and set(df["gpu"]) == {"0"}
    assert "gpu_mem_mib" not in df.columns


def test_status_of_a_local_run_that_reserved_far_more_than_it_used_suggests_the_smaller_reservation(tmp_path,
                                                                                                   monkeypatch):
    spec = write_spec(tmp_path, f"""
        name: oversized
        script: {PROBE}
        params: {{grid: {{i: [0, 1]}}, fixed: {{alloc_mib: 50, hold: 1.1}}}}
        metrics: {{stdout: last}}
        resources: {{vcpus: 2, memory_mib: 4096}}
    """)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "batchsweep", *args], cwd=tmp_path,
                              env={**os.environ, "CI": "true", "COLUMNS": "200"},
                              capture_output=True, text=True, timeout=120)

    first = cli("run", str(spec))
    assert first.returncode == 0, first.stderr
    run_id = first.stdout.split()[0]
    status = cli("status", run_id)
    lines = [x for x in status.stdout.splitlines() if x.startswith("size ")]
    assert len(lines) == 1, status.stdout
    assert "`resources: {vcpus: 0.25, memory_mib: 256}`" in lines[0]
    assert "of the 2 vCPU and 4096 MiB each reserved" in lines[0] and "8× fewer vCPU slots" in lines[0]
    assert "16× less memory" in lines[0] and "on this machine" in lines[0]
    run = batchsweep.load_run(run_id, store=tmp_path / ".batchsweep")
    run.results()
    # the report says it too, from the results table it has: no task's status file is read again for it
    from batchsweep.runs.run import Run

    monkeypatch.setattr(
        Run, "statuses", lambda self: pytest.fail("the report read every task's status again")
    )
    run.report(tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert "Resources: tasks used at most" in html and "vcpus: 0.25, memory_mib: 256" in html
    monkeypatch.undo()

    # applies it: the next run reserves what the suggestion said
    sized = cli("run", str(spec), "--right-size")
    assert sized.returncode == 0, sized.stderr
    assert "right-size: tasks used at most" in sized.stderr
    again = cli("status", sized.stdout.split()[0])
    assert not any(x.startswith("size ") for x in again.stdout.splitlines()), again.stdout  # it fits now
    resources = batchsweep.load_run(sized.stdout.split()[0], store=tmp_path / ".batchsweep").info["spec"][
        "resources"
    ]
    assert (resources["vcpus"], resources["memory_mib"]) == (0.25, 256)


def test_right_sizing_asks_only_for_what_each_backend_reserves():
    from batchsweep.model import State, TaskStatus
    from batchsweep.report.cost import run_right_size
    from batchsweep.store.record import RunRecord

    used = [
        TaskStatus(
            index=i, state=State.SUCCEEDED, started_at=0.0, ended_at=10.0, peak_rss_mib=300.0, cpu_s=1.0
        )
        for i in range(3)
    ]
    resources = {"vcpus": 4, "memory_mib": 8192, "gpus": 0}

    def run(backend: str, engine: dict[str, Any] | None = None) -> RunRecord:
        return RunRecord.of(
            {
                "run_id": "r",
                "name": "r",
                "backend": backend,
                "created": "",
                "created_ts": 0.0,
                "n_tasks": 3,
                "engine": engine or {},
                "spec": {
                    "name": "r",
                    "script": "s.py",
                    "params": {"grid": {"a": [1]}},
                    "resources": resources,
                },
            }
        )

    dask = run_right_size(run("dask", {"cluster": "local", "resources": {"MEMORY": 8192 * 2**20}}), used)
    assert dask is not None and (dask.vcpus, dask.memory_mib) == (None, 512)  # Dask reserves no vCPUs
    assert dask.overrides == ["resources.memory_mib=512"] and "on the Dask workers" in dask.line()
    # Memory nobody reserved (Dask without it, local without an explicit memory_mib) is not suggested.
    assert run_right_size(run("dask", {"cluster": "local"}), used) is None
    local = run_right_size(run("local"), used)
    assert local is not None and (local.vcpus, local.memory_mib) == (0.25, None)
    # Tasks that used most of what they reserved get no line.
    busy = [
        TaskStatus(
            index=0, state=State.SUCCEEDED, started_at=0.0, ended_at=10.0, peak_rss_mib=3000.0, cpu_s=30.0
        )
    ]
    assert run_right_size(run("local", {"memory_limit_mib": 4096}), busy) is None
    aws = run_right_size(run("aws-batch"), used)
    assert aws is not None and aws.where is None and "AWS cost" in aws.line()


def concurrent_probe_runs(tmp_path, runs: dict[str, tuple[str, str]]) -> list:
    """Each named sweep of resource_probe.py (its params and its `resources.gpus`) run at once, each by its
    own `batchsweep run` process (as two users' runs are), into one store; their results tables, each all
    succeeded."""
    specs = []
    for name, (params, gpus) in runs.items():
        (tmp_path / name).mkdir()
        specs.append(write_spec(tmp_path / name, textwrap.dedent(f"""
            name: {name}
            script: {PROBE}
            params: {params}
            resources: {{gpus: {gpus}, vcpus: 0.1}}
            metrics: {{stdout: last}}
        """)))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "batchsweep", "run", str(spec), "--store", str(tmp_path / "store")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for spec in specs
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    tables = [batchsweep.load_run(run_id, store=tmp_path / "store").results()
              for run_id in os.listdir(tmp_path / "store" / "runs")]
    assert all(set(df["status"]) == {"succeeded"} for df in tables)
    return tables


def test_two_concurrent_runs_of_1_and_2_gpu_tasks_never_share_a_device(tmp_path, monkeypatch):
    """Two sweeps on one 4-GPU machine at once (separate processes, as two users' runs are): every task
    records the CUDA_VISIBLE_DEVICES it got, and no device ever has two tasks on it."""
    import json

    monkeypatch.setenv("BATCHSWEEP_GPUS", "0,1,2,3")
    grid = "{grid: {i: [0, 1, 2, 3, 4, 5]}, fixed: {hold: 0.5}}"
    spans = []
    for df in concurrent_probe_runs(tmp_path, {"ones": (grid, "1"), "twos": (grid, "2")}):
        spans += [(gpu, row["start"], row["end"]) for _, row in df.iterrows()
                  for gpu in row["cuda"].removeprefix("gpu:").split(",")]
    assert len(spans) == 6 + 12 and {g for g, _, _ in spans} <= {"0", "1", "2", "3"}
    clashes = [
        (a, b) for a in spans for b in spans if a is not b and a[0] == b[0] and a[1] < b[2] and b[1] < a[2]
    ]
    assert clashes == [], json.dumps(clashes[:3])
    table = json.loads((Path(os.environ["BATCHSWEEP_RUNTIME_DIR"]) / "gpu-leases.json").read_text())
    assert table == []  # every lease given back


def test_one_sweep_mixes_2_1_half_and_0_gpu_tasks_beside_another_run_and_no_device_is_ever_overcommitted(
        tmp_path, monkeypatch):
    """`resources.gpus: "{gpus}"`: each task takes what its param says. At every moment the shares running on
    a device add up to at most one, across both runs; 0-GPU tasks get no device."""
    monkeypatch.setenv("BATCHSWEEP_GPUS", "0,1,2")
    events = []
    for df in concurrent_probe_runs(tmp_path, {
            "mixed": ("{grid: {i: [0, 1], gpus: [2, 1, 0.5, 0]}, fixed: {hold: 0.5}}", '"{gpus}"'),
            "ones": ("{grid: {i: [0, 1, 2, 3]}, fixed: {hold: 0.5, gpus: 1}}", "1")}):
        for _, row in df.iterrows():
            devices = [d for d in row["cuda"].removeprefix("gpu:").split(",") if d]
            assert len(devices) == (int(row["gpus"]) if row["gpus"] >= 1 else 1 if row["gpus"] else 0), row
            share = min(1.0, row["gpus"])
            events += [(t, d, s) for d in devices for t, s in ((row["start"], share), (row["end"], -share))]
    assert len(events) == 2 * (2 * (2 + 1 + 1) + 4)
    held: Counter = Counter()
    for _t, device, change in sorted(events, key=lambda e: (e[0], e[2])):  # (an end before a start at a tie)
        held[device] += change
        assert held[device] <= 1 + 1e-9, (device, held)


def test_a_lease_held_by_a_dead_process_is_reclaimed(tmp_path):
    import json

    from batchsweep.engines.local.leases import MachineGpus

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    table = tmp_path / "gpu-leases.json"
    table.write_text(
        json.dumps([{"id": "x", "pid": dead.pid, "started": "1", "gpus": ["0", "1"], "share": 1.0}])
    )
    live = subprocess.Popen(["sleep", "30"])
    try:
        from batchsweep.store.runlock import start_time

        holder = MachineGpus(table)
        holder.pid, holder.started = live.pid, start_time(live.pid)  # leases held by `live`
        got = holder.take(2, ["0", "1"])
        assert got is not None and got[1] == ("0", "1")  # the dead holder's devices
        assert MachineGpus(table).take(0.5, ["0", "1"]) is None  # the live one's are not
    finally:
        live.kill()
        live.wait()
    assert MachineGpus(table).take(0.5, ["0", "1"]) is not None  # nor once it is gone
