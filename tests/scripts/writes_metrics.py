"""Writes metrics.json; fails with exit 3 when --fail_on matches, hangs when --hang_on matches."""
import argparse
import json
import os
import subprocess
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--a", type=int, required=True)
p.add_argument("--b", type=float, default=1.0)
p.add_argument("--fail_on", type=int, default=-1)
p.add_argument("--hang_on", type=int, default=-1)
p.add_argument("--sleep", type=float, default=0.0)
p.add_argument("--pid_dir", default="")
args = p.parse_args()

if args.pid_dir:
    with open(os.path.join(args.pid_dir, f"{args.a}.pid"), "w") as f:
        f.write(str(os.getpid()))
if args.a == args.hang_on:
    # A child in the same process group: the timeout must kill it too.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(os.path.join(args.pid_dir, f"{args.a}.child.pid"), "w") as f:
        f.write(str(child.pid))
    time.sleep(600)
if args.a == args.fail_on:
    print("failing on purpose", file=sys.stderr)
    sys.exit(3)
time.sleep(args.sleep)
with open("metrics.json", "w") as f:
    json.dump({"product": args.a * args.b, "a_seen": args.a}, f)
