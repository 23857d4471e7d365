"""Reports the GPUs it was given and when it ran; optionally holds memory or burns CPU."""

import argparse
import json
import os
import time

parser = argparse.ArgumentParser()
parser.add_argument("--i", type=int, default=0)
parser.add_argument("--alloc-mib", type=int, default=0)
parser.add_argument("--hold", type=float, default=0.3)
parser.add_argument("--busy", type=float, default=0.0)
parser.add_argument("--gpus", type=float, default=0.0)  # what the task asked for (`resources.gpus: "{gpus}"`)
args = parser.parse_args()

start = time.time()
block = b"\x01" * (args.alloc_mib * 2**20)  # touched, so it counts in RSS
deadline = time.process_time() + args.busy
while time.process_time() < deadline:
    pass
time.sleep(args.hold)
print(
    json.dumps(
        {
            "cuda": "gpu:" + os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "nvidia": "gpu:" + os.environ.get("NVIDIA_VISIBLE_DEVICES", ""),
            "start": start,
            "end": time.time(),
            "held": len(block),
        }
    )
)
