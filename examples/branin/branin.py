"""The Branin-Hoo test function as an argparse script.

Writes ``metrics.json`` with ``value`` = branin(x1, x2). Domain x1 in [-5, 10], x2 in [0, 15];
the global minimum 0.397887 is reached at (-pi, 12.275), (pi, 2.275) and (9.42478, 2.475).

    python branin.py --x1 3.14159 --x2 2.275
"""
import argparse
import json
import math


def branin(x1: float, x2: float) -> float:
    a, b, c = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi
    r, s, t = 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--x1", type=float, required=True, help="in [-5, 10]")
    parser.add_argument("--x2", type=float, required=True, help="in [0, 15]")
    args = parser.parse_args()
    value = branin(args.x1, args.x2)
    with open("metrics.json", "w") as f:
        json.dump({"value": value}, f)
    print(f"branin({args.x1}, {args.x2}) = {value:.6f}")


if __name__ == "__main__":
    main()
