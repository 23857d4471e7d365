"""A training script written for the MLflow tests: it logs to MLflow only (nothing printed, no metrics.json).
val_loss = quality + 1/epoch at each epoch (step), `--pace` seconds apart, then acc = 1 - quality once.
`--store mlruns` picks a file store itself, as older scripts do; `--folds N` logs N nested runs (one per fold,
with a worse acc each) before the parent's summary; `--silent` logs nothing."""

import argparse
import time

import mlflow

parser = argparse.ArgumentParser()
parser.add_argument("--quality", type=float, required=True)
parser.add_argument("--epochs", type=int, default=4)
parser.add_argument("--pace", type=float, default=0.0)
parser.add_argument("--store", default="")
parser.add_argument("--folds", type=int, default=0)
parser.add_argument("--silent", action="store_true", help="log nothing at all")
args = parser.parse_args()
if args.silent:
    raise SystemExit(0)

if args.store:
    mlflow.set_tracking_uri(args.store)
with mlflow.start_run():
    mlflow.log_param("quality", args.quality)
    for fold in range(args.folds):
        with mlflow.start_run(nested=True):
            mlflow.log_metric("acc", 0.5 - fold / 10)
            mlflow.log_metric("val_loss", 99.0, step=1)
    for epoch in range(1, args.epochs + 1):
        time.sleep(args.pace)
        mlflow.log_metric("val_loss", args.quality + 1 / epoch, step=epoch)
    mlflow.log_metric("acc", 1 - args.quality)
    mlflow.log_metric("nan_metric", float("nan"))
