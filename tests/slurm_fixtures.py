"""A real one-node Slurm cluster for the Slurm engine's tests: munged, slurmctld and slurmd on this machine
(Debian's packages; `make slurm` installs them), with a configuration of the test's own in a temporary
directory (`SLURM_CONF`) and ports of its own, so it never touches /etc/slurm or another test run's cluster.

Root only (slurmd runs jobs as their user); elsewhere the tests that need it skip, saying why.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["slurm_cluster"]

START_TIMEOUT_S = 90.0
NODE_CPUS = 4  # more than this machine's cores (config_overrides): four array tasks run at once


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _missing() -> str | None:
    """Why no cluster can start here (None: it can)."""
    if os.geteuid() != 0:
        return (
            "a Slurm cluster needs root to start slurmd (it runs jobs as their user); run the tests as root"
        )
    for tool in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"Slurm is not installed ({tool} missing): `make slurm` installs Debian's packages"
    return None


@dataclass
class SlurmCluster:
    conf: Path
    directory: Path
    env: dict[str, str]  # SLURM_CONF for the client commands

    def squeue(self) -> list[str]:
        out = subprocess.run(["squeue", "--noheader", "--array", "--format=%i %T %r"], env=self.env,
                             capture_output=True, text=True, timeout=30)
        return out.stdout.split("\n")[:-1]

    def cancel_all(self) -> None:
        subprocess.run(["scancel", "--user=root"], env=self.env, capture_output=True, timeout=30)
        deadline = time.monotonic() + 120
        while self.squeue() and time.monotonic() < deadline:
            time.sleep(0.2)


def _die_with_parent() -> None:
    """In the daemon, before exec: SIGTERM when the test process that started it dies (a killed test run
    leaves no cluster behind)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_MUNGED: list[subprocess.Popen[bytes]] = []  # started here, never stopped (see slurm_cluster)


def _start_munge() -> None:
    """munged, unless one is running already (its socket answers)."""
    if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
        return
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        subprocess.run(["/usr/sbin/mungekey", "--create"], check=True)  # the Debian package normally made one
        shutil.chown(key, "munge", "munge")
    proc = subprocess.Popen(["runuser", "-u", "munge", "--", "/usr/sbin/munged", "--foreground", "--force"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("munged did not start")
        time.sleep(0.1)
    _MUNGED.append(proc)


def _config(directory: Path, host: str) -> str:
    return f"""ClusterName=bstest
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
ReturnToService=2
SlurmctldPidFile={directory}/slurmctld.pid
SlurmdPidFile={directory}/slurmd.pid
SlurmdSpoolDir={directory}/slurmd
StateSaveLocation={directory}/slurmctld
SlurmUser=root
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
KillWait=5
SlurmctldLogFile={directory}/slurmctld.log
SlurmdLogFile={directory}/slurmd.log
NodeName={host} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    why = _missing()
    if why:
        pytest.skip(why)
    directory = tmp_path_factory.mktemp("slurm")
    (directory / "slurmd").mkdir()
    (directory / "slurmctld").mkdir()
    conf = directory / "slurm.conf"
    conf.write_text(_config(directory, socket.gethostname().split(".")[0]))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    # munged stays up after the session, as the system service it stands in for: another test session's
    # cluster on this machine may be using it (stopping it failed theirs with "Protocol authentication
    # error").
    _start_munge()
    daemons = [
        subprocess.Popen(
            [f"/usr/sbin/{d}", "-D", "-f", str(conf)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        for d in ("slurmctld", "slurmd")
    ]
    saved = os.environ.get("SLURM_CONF")
    # the engine's sbatch/squeue/scancel, in this process and its children
    os.environ["SLURM_CONF"] = str(conf)
    cluster = SlurmCluster(conf=conf, directory=directory, env=env)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            out = subprocess.run(
                ["sinfo", "--noheader", "--format=%t"], env=env, capture_output=True, text=True
            )
            if out.returncode == 0 and out.stdout.strip() in ("idle", "mix", "alloc"):
                break
            if time.monotonic() > deadline or any(d.poll() is not None for d in daemons):
                log = "".join((directory / f).read_text()[-2000:] for f in ("slurmctld.log", "slurmd.log")
                              if (directory / f).exists())
                raise RuntimeError(f"the Slurm cluster did not come up: {out.stdout}{out.stderr}\n{log}")
            time.sleep(0.3)
        yield cluster
    finally:
        try:
            cluster.cancel_all()
        finally:
            for d in reversed(daemons):
                d.terminate()
                try:
                    d.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    d.kill()
                    d.wait()
            if saved is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = saved
