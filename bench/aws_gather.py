"""Gathering the results of a big AWS Batch run: one summary object per child against two objects per task.

A run of N tasks is submitted to moto on 127.0.0.1 (one array job per 10,000 children, `--per-child` tasks per
child); its store is then filled with what the played containers would leave (every task's status.json and
metrics.json, and each child's summary in runs/<id>/packs/). Those objects are put straight into moto's S3
backend by the server process (`--serve`: moto's ThreadedMotoServer in a process of its own), not through
200,000 PUTs, so the bench ends in minutes; every read goes through HTTP as usual.

Timed as a user meets it: `batchsweep results RUN -o FILE.csv` in a new process (results.parquet removed
first), first reading the summaries, then with them deleted (what it read before summaries existed). The same
process counts its own AWS requests (`common.observe_every_call`) and reports its peak RSS. Both CSV files
must be equal.

    .venv/bin/python bench/aws_gather.py [--tasks 100000] [--per-child 50]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent


def serve(port: int) -> None:
    """The emulator for this bench: moto in this process, plus a line protocol on stdin to put many objects
    directly into its S3 backend ({"bucket": B, "objects": [[key, text], ...]} -> "ok")."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
        for key, text in request["objects"]:
            backend.put_object(request["bucket"], key, text.encode())
        print("ok", flush=True)
    server.stop()


class Emulator:
    """`serve` in a child process; `put` hands it objects to store."""

    def __init__(self) -> None:
        from batchsweep.emulator.server import free_port

        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None and self.process.stdin is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the bench's moto server did not start")
        url = f"http://127.0.0.1:{self.port}"
        import urllib.request

        request = urllib.request.Request(f"{url}/moto-api/config", data=b'{"batch": {"use_docker": false}}',
                                         headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(request, timeout=10).read()
        self.env = {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }

    def put(self, bucket: str, objects: list[tuple[str, str]]) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"bucket": bucket, "objects": objects}) + "\n")
        self.process.stdin.flush()
        if self.process.stdout.readline().strip() != "ok":
            raise RuntimeError("the bench's moto server failed to store objects")

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()


def fill_store(emulator: Emulator, run: Any, per_child: int) -> float:
    """What each child leaves in S3: its tasks' status.json + metrics.json, and its summary."""
    from batchsweep.model import State, TaskStatus
    from batchsweep.store.core import PackEntry
    from batchsweep.task.remote import summary_name

    store, n = run.store, run.n_tasks
    backend = store.backend
    t0 = time.perf_counter()
    now = time.time()
    for c in range((n + per_child - 1) // per_child):
        entries, objects = [], []
        for i in range(c * per_child, min(n, (c + 1) * per_child)):
            failed = i % 97 == 13
            status = TaskStatus(
                index=i,
                state=State.FAILED if failed else State.SUCCEEDED,
                exit_code=1 if failed else 0,
                error="exit code 1: ValueError: bad" if failed else None,
                started_at=now + i * 0.01,
                ended_at=now + i * 0.01 + 0.5,
                worker=f"child-{c}",
                peak_rss_mib=42.0,
                cpu_s=0.4,
            )
            metrics = None if failed else {"loss": 1.0 / (i + 1), "acc": (i % 100) / 100, "epoch": i % 10}
            if metrics is not None:
                objects.append(
                    (backend._key(store.task_metrics_key(run.id, i)), json.dumps(metrics, indent=1))
                )
            objects.append((backend._key(store.task_status_key(run.id, i)), status.to_json()))
            entries.append(PackEntry(status, metrics))
        objects.append(
            (backend._key(store.pack_key(run.id, summary_name(0, c, 1))), "".join(e.line() for e in entries))
        )
        emulator.put(backend.bucket, objects)
    return time.perf_counter() - t0


def cli_results(run: Any, store: Path, out: Path) -> tuple[float, Counter[str], float, float]:
    """`batchsweep results RUN -o out` in a new process, with the cached results.parquet removed first: wall
    time, the AWS requests it made, its peak RSS (MB), its CPU time (user + system, s: on a loaded machine the
    wall time is mostly waiting for a core)."""
    import resource

    run.store.backend.delete_prefix(run.store.results_cache_key(run.id))
    report = out.with_suffix(".calls.json")
    # At exit: the calls counted, and VmHWM (the peak RSS of this program's own memory; ru_maxrss would carry
    # the forking parent's over the exec).
    code = (f"import sys; sys.path.insert(0, {str(BENCH)!r}); import atexit, json; from common import CALLS, "
            f"observe_every_call; observe_every_call(); atexit.register(lambda: open({str(report)!r}, 'w')"
            ".write(json.dumps({'calls': CALLS, 'hwm': [l for l in open('/proc/self/status') "
            "if l.startswith('VmHWM')][0]}))); from batchsweep.cli import main; sys.argv[0] = 'batchsweep'; "
            "sys.exit(main())")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code, "results", run.id, "--store", str(store), "-o", str(out)], check=True
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    found = json.loads(report.read_text())
    return wall, Counter(found["calls"]), int(found["hwm"].split()[1]) / 1024, cpu


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--per-child", type=int, default=50)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0

    import batchsweep
    from batchsweep.aws import clients
    from batchsweep.emulator.server import deploy_stack

    emulator = Emulator()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.update(emulator.env)
            deploy_stack(clients.make_session(region="us-east-1"))
            spec = Path(tmp) / "sweep.yaml"
            spec.write_text(
                f"name: gather\nscript: {BENCH / 'trivial.py'}\n"
                f"params: {{grid: {{i: {json.dumps(list(range(args.tasks)))}}}}}\n"
                f"backend: aws-batch\naws: {{stack: batchsweep, tasks_per_job: {args.per_child}}}\n"
                "resources: {vcpus: 1, memory_mib: 2048}\n"
            )
            store = Path(tmp) / "store"
            run = batchsweep.run(spec, store=store, detach=True, progress=False)
            fill_s = fill_store(emulator, run, args.per_child)
            new_s, new, new_mb, new_cpu = cli_results(run, store, Path(tmp) / "new.csv")
            print(
                f"store filled in {fill_s:.1f} s; from the summaries: {new_s:.2f} s, {sum(new.values()):,} "
                f"requests, {new_mb:.0f} MB, {new_cpu:.2f} s CPU",
                flush=True,
            )
            backend = run.store.backend  # 1,000 keys per DeleteObjects
            keys = [backend._key(run.store.pack_key(run.id, name)) for name in run.store.pack_names(run.id)]
            for start in range(0, len(keys), 1000):
                backend.client.delete_objects(Bucket=backend.bucket, Delete={
                    "Objects": [{"Key": k} for k in keys[start:start + 1000]], "Quiet": True})
            old_s, old, old_mb, old_cpu = cli_results(run, store, Path(tmp) / "old.csv")
            equal = (Path(tmp) / "new.csv").read_bytes() == (Path(tmp) / "old.csv").read_bytes()
    finally:
        emulator.close()
    if not equal:
        print("the two tables differ", file=sys.stderr)
        return 1
    children = (args.tasks + args.per_child - 1) // args.per_child
    s3 = {
        name: sum(v for k, v in c.items() if k.startswith("s3.")) for name, c in (("new", new), ("old", old))
    }
    gets = {name: c["s3.GetObject"] for name, c in (("new", new), ("old", old))}
    print(f"`batchsweep results RUN -o results.csv` of {args.tasks:,} tasks in {children:,} children "
          f"({args.per_child} per child), moto on 127.0.0.1, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at the end; store filled in {fill_s:.1f} s; tables equal")
    print(f"{'':26}{'summaries':>12}{'per-task files':>16}{'ratio':>9}")
    print(f"{'S3 requests':26}{s3['new']:>12,}{s3['old']:>16,}{s3['old'] / max(s3['new'], 1):>8.0f}x")
    print(
        f"{'  of which GetObject':26}{gets['new']:>12,}{gets['old']:>16,}"
        f"{gets['old'] / max(gets['new'], 1):>8.0f}x"
    )
    print(f"{'wall time (s)':26}{new_s:>12.2f}{old_s:>16.2f}{old_s / new_s:>8.1f}x")
    print(f"{'CPU time (s)':26}{new_cpu:>12.2f}{old_cpu:>16.2f}{old_cpu / new_cpu:>8.1f}x")
    print(f"{'peak RSS (MB)':26}{new_mb:>12.0f}{old_mb:>16.0f}{old_mb / new_mb:>8.1f}x")
    print(f"summaries: {dict(sorted(new.items()))}")
    print(f"per-task:  {dict(sorted(old.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
