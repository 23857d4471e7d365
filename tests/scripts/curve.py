"""A training script written for the early-stopping tests: a known validation curve per `--quality`
(val_loss = quality + 1/epoch, lower is better), one line per epoch, `--pace` seconds apart."""

import argparse
import json
import os
import time

parser = argparse.ArgumentParser()
parser.add_argument("--quality", type=float, required=True)
parser.add_argument("--epochs", type=int, default=8)
parser.add_argument("--pace", type=float, default=0.2)
parser.add_argument("--api", action="store_true", help="report with batchsweep.log_metrics(step=...) instead")
parser.add_argument("--gated", action="store_true",
                    help="print an epoch only once the worker has read the one before into the task's "
                         "series file: how many steps a task runs past a decision then depends on the "
                         "worker, not the load")
parser.add_argument("--hold", default=None,
                    help="after epoch 2, wait until this file exists: the task is surely still running while "
                         "a test reads it, however loaded the machine")
args = parser.parse_args()


def read_by_the_worker(epoch: int) -> bool:
    try:
        with open(os.environ["BATCHSWEEP_SERIES_FILE"]) as f:
            return any(json.loads(line).get("step") == epoch for line in f if line.endswith("\n"))
    except FileNotFoundError:
        return False


for epoch in range(1, args.epochs + 1):
    time.sleep(args.pace)
    val_loss = args.quality + 1 / epoch
    if args.api:
        import batchsweep

        batchsweep.log_metrics(step=epoch, val_loss=val_loss)
    else:
        print(f"epoch {epoch} train_loss={val_loss * 0.9:.4f} val_loss={val_loss:.4f}", flush=True)
    deadline = time.monotonic() + 300
    while args.hold and epoch == 2 and not os.path.exists(args.hold) and time.monotonic() < deadline:
        time.sleep(0.02)
    while args.gated and not read_by_the_worker(epoch) and time.monotonic() < deadline:
        time.sleep(0.02)
