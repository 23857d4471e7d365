"""A task written for the subreaper test: its grandchild is orphaned (its parent exits) and reports who
adopted it, as the metric `adopter`, and whether that is the task's own parent (its reaper: `reaper.py`) as
`adopted_by_reaper`."""

import json
import os
import time

read, write = os.pipe()
middle = os.fork()
if middle == 0:
    parent = os.getpid()  # taken before the fork: the middle may be gone before the grandchild first runs
    if os.fork() == 0:  # the grandchild
        os.close(read)
        deadline = time.time() + 10
        while os.getppid() == parent and time.time() < deadline:
            time.sleep(0.01)  # until its parent is gone and someone adopted it
        os.write(write, str(os.getppid()).encode())
        os._exit(0)
    os._exit(0)  # the middle process leaves its child behind
os.close(write)
os.waitpid(middle, 0)
adopter = int(os.read(read, 64) or 0)
with open("metrics.json", "w") as f:
    json.dump({"adopter": adopter, "adopted_by_reaper": adopter == os.getppid()}, f)
