"""A tiny argparse script for bad-input and init tests: writes its window as the metric."""

import argparse
import json

parser = argparse.ArgumentParser(description="tiny target")
parser.add_argument("--window", type=int, default=5, help="window length")
parser.add_argument("--symbol", default="BTC", help="coin pair")
parser.add_argument("--mode", choices=["fast", "slow"], default="fast", help="speed")
parser.add_argument("--save_name", required=True, help="where to save")

if __name__ == "__main__":
    args = parser.parse_args()
    with open("metrics.json", "w") as f:
        json.dump({"value": args.window}, f)
