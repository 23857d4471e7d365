"""A task that misbehaves on request (issues 15, 30): logs each execution, fails once, leaves a setsid
grandchild or a double-forked daemon with a scrubbed environment, writes a hostile metrics.json, floods
stdout, plants a symlink where the runner keeps its files."""
import argparse
import json
import os
import subprocess
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--a", type=int, required=True)
p.add_argument("--log", default="")  # appends one line per execution
p.add_argument("--fail_first", default="")  # a directory: fail unless <dir>/<a> exists (and create it)
p.add_argument("--sleep", type=float, default=0.0)
p.add_argument("--setsid_child", default="")  # a directory: start a setsid grandchild, write its pid there
p.add_argument("--daemon", default="")  # a directory: double-fork a daemon (setsid, empty env), its pid there
p.add_argument("--metrics_kind", default="")  # fifo | dir | symlink | huge
p.add_argument("--stdout_mib", type=int, default=0)
# any: metrics past int64 and with a lone surrogate, a non-UTF-8 output
p.add_argument("--odd_values", default="")
p.add_argument("--xs", type=int, nargs="*", default=[])
# NAME=TARGET: replace ../NAME (a file the runner owns) by a symlink to TARGET
p.add_argument("--plant", default="")
args = p.parse_args()

if args.log:
    with open(args.log, "a") as f:
        f.write(f"{args.a}\n")
if args.setsid_child:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    with open(os.path.join(args.setsid_child, f"{args.a}.pid"), "w") as f:
        f.write(str(child.pid))
if args.daemon and os.fork() == 0:  # the middle process: its own session, gone once its child runs
    os.setsid()
    if os.fork() == 0:  # the daemon: no batchsweep variable, no token, no parent but whoever adopts it
        pid_file = os.path.join(args.daemon, f"{args.a}.pid")
        os.execve(
            "/bin/sh", ["sh", "-c", 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 600', pid_file], {}
        )
    os._exit(0)
while args.daemon and not os.path.exists(os.path.join(args.daemon, f"{args.a}.pid")):
    time.sleep(0.01)  # the daemon runs (and said so) before the task goes on
time.sleep(args.sleep)
if args.plant:
    name, target = args.plant.split("=", 1)
    for _ in range(20):  # log_metrics(step=...) to the series file it then replaces
        print(f"step={_} loss={1 / (1 + _)}", flush=True)
    planted = os.path.join("..", name)
    if os.path.isdir(planted) and not os.path.islink(planted):
        os.rename(planted, planted + ".was")
    elif os.path.lexists(planted):
        os.unlink(planted)
    os.makedirs(os.path.dirname(planted), exist_ok=True)  # ../../1/work: another task's, not yet made
    os.symlink(target, planted)
    print(f"step=99 loss=0.5 planted {name}", file=sys.stderr, flush=True)
if args.fail_first:
    marker = os.path.join(args.fail_first, str(args.a))
    if not os.path.exists(marker):
        open(marker, "w").close()
        sys.exit(3)
if args.stdout_mib:
    line = ("x" * 1023 + "\n").encode()
    out = sys.stdout.buffer
    for _ in range(args.stdout_mib * 1024):
        out.write(line)
    out.write(b'{"last": 1}\n')
    out.flush()
if args.metrics_kind == "fifo":
    os.mkfifo("metrics.json")
elif args.metrics_kind == "dir":
    os.mkdir("metrics.json")
elif args.metrics_kind == "symlink":
    os.symlink("/etc/passwd", "metrics.json")
elif args.metrics_kind == "huge":
    with open("metrics.json", "w") as f:
        f.write('{"x": "' + "y" * (70 << 20) + '"}')
elif args.odd_values:
    with open(os.fsencode("out_") + b"\xff\xfe.bin", "wb") as f:
        f.write(b"1")
    with open("metrics.json", "w") as f:
        json.dump({"big": 2**64 + args.a, "small": -(2**63) - 1, "text": f"lone \ud800 {args.odd_values}",
                   "\ud83dname": 1.5}, f)  # (ensure_ascii: the lone surrogates as JSON's escapes)
elif not args.stdout_mib:
    with open("metrics.json", "w") as f:
        env = os.environ.get("BATCHSWEEP_PARAMS")
        if env is None:
            with open(os.environ["BATCHSWEEP_PARAMS_FILE"]) as pf:
                env = pf.read()
        json.dump(
            {"a2": args.a * 2, "n_xs": len(args.xs), "env_params": ",".join(sorted(json.loads(env)))}, f
        )
