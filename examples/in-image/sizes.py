"""Needs a package batchsweep does not: humanize, named in requirements.txt beside this script.

On AWS Batch it comes from the task image (`batchsweep image push sweep.yaml`). The metrics also say where the
task ran: the image's user and Python, not yours.
"""
import argparse
import json
import os
import platform
import pwd

import humanize

p = argparse.ArgumentParser()
p.add_argument("--gigabytes", type=int, required=True)
args = p.parse_args()

size = args.gigabytes * 10**9
with open("metrics.json", "w") as f:
    json.dump({"size": humanize.naturalsize(size), "binary": humanize.naturalsize(size, binary=True),
               "user": pwd.getpwuid(os.getuid()).pw_name, "uid": os.getuid(),
               "python": platform.python_version()}, f)
