"""Echoes the string flags it received into metrics.json, so a test can compare them byte for byte."""

import argparse
import json
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--text")
parser.add_argument("--n", type=int, default=0)
args = parser.parse_args()
with open("metrics.json", "w") as f:
    json.dump({"text": args.text, "n": args.n, "argv": json.dumps(sys.argv[1:])}, f)
