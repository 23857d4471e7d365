"""A training script written for the early-stopping tests: a known validation curve per `--quality`
(val_loss = quality + 1/epoch, lower is better), one line per epoch, `--pace` seconds apart."""

import argparse
import time

parser = argparse.ArgumentParser()
parser.add_argument("--quality", type=float, required=True)
parser.add_argument("--epochs", type=int, default=8)
parser.add_argument("--pace", type=float, default=0.2)
parser.add_argument("--api", action="store_true", help="report with batchsweep.log_metrics(step=...) instead")
args = parser.parse_args()

for epoch in range(1, args.epochs + 1):
    time.sleep(args.pace)
    val_loss = args.quality + 1 / epoch
    if args.api:
        import batchsweep

        batchsweep.log_metrics(step=epoch, val_loss=val_loss)
    else:
        print(f"epoch {epoch} train_loss={val_loss * 0.9:.4f} val_loss={val_loss:.4f}", flush=True)
