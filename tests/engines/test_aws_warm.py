"""Warm start inside an AWS Batch child: one fork server per child imports the script's imports once, each
task is a fork of it, and its output still reaches its log files and (prefixed) the container's stdout for
CloudWatch. Moto's server; containers played."""

from __future__ import annotations

import textwrap
from pathlib import Path

from aws_batch_helpers import play_containers, write_spec

import batchsweep

PROBE = """\
import argparse, json, os, sys
parser = argparse.ArgumentParser()
parser.add_argument("--x", type=int)
args = parser.parse_args()
parent = open(f"/proc/{os.getppid()}/cmdline", "rb").read()
# its parent is its reaper (a fork of the server: task/_reap.py), whose parent is the server
reaper_parent = int(open(f"/proc/{os.getppid()}/stat").read().rsplit(")", 1)[1].split()[1])
json.dump({"warm": b"batchsweep.task.warm" in parent, "server": reaper_parent, "own_group": os.getpgid(0) == os.getpid(),
           "cwd_is_task_dir": os.getcwd() == os.environ["BATCHSWEEP_TASK_DIR"]}, open("metrics.json", "w"))
print("out", args.x)
print("err", args.x, file=sys.stderr)
sys.exit(3 if args.x == 5 else 0)
"""  # noqa: E501


def test_a_child_of_several_tasks_forks_them_from_one_warm_server(tmp_path: Path, stack):
    (tmp_path / "probe.py").write_text(PROBE)
    spec = write_spec(tmp_path, textwrap.dedent(f"""\
        name: warm-cloud
        script: {tmp_path / 'probe.py'}
        params: {{grid: {{x: [1, 2, 3, 4, 5, 6]}}}}
        backend: aws-batch
        aws: {{stack: batchsweep, region: us-east-1, tasks_per_job: 3}}
        resources: {{vcpus: 0.5, memory_mib: 1024}}
        warm: true
    """))
    run = batchsweep.run(spec, store=tmp_path / "store", detach=True)
    assert play_containers(run) == [0, 3]
    df = batchsweep.load_run(run.id, store=tmp_path / "store").results()
    assert list(df["status"]) == ["succeeded"] * 4 + ["failed", "succeeded"]
    assert df["warm"].all() and df["own_group"].all() and df["cwd_is_task_dir"].all()
    assert df.loc[[0, 1, 2], "server"].nunique() == 1 and df.loc[[3, 5], "server"].nunique() == 1
    assert df.loc[0, "server"] != df.loc[3, "server"], "one server per child"
    assert df.loc[4, "exit_code"] == 3
    assert run.logs(4) == "out 5\n" and run.logs(4, stderr=True) == "err 5\n"
    assert list(run.engine.logs(4) or ()) == ["out 5\n"], "teed to the container's stdout, prefixed"
    assert list(run.engine.logs(4, stderr=True) or ()) == ["err 5\n"]
