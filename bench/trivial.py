"""A task that does nothing: measures pure per-task overhead."""
import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--i", type=int, default=0)
parser.parse_args()
