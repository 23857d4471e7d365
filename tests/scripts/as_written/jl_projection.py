"""How far a random projection moves the distances between points: projects random points down to
n_components dimensions ("auto": the Johnson-Lindenstrauss bound for eps) and prints the distortion seen."""

import itertools
import math
import optparse
import random


def jl_min_dim(n_samples: int, eps: float) -> int:
    """The dimension that keeps every pairwise distance within 1 +- eps (Johnson-Lindenstrauss)."""
    return int(4 * math.log(n_samples) / (eps**2 / 2 - eps**3 / 3))


def entry(rng: random.Random, sparse: bool) -> float:
    """A projection matrix's entry: Gaussian, or Achlioptas' -1/0/+1 (the same variance, two thirds zero)."""
    return rng.choice((-1, 0, 0, 0, 0, 1)) * math.sqrt(3) if sparse else rng.gauss(0, 1)


def squared_distances(points: list[list[float]]) -> list[float]:
    return [sum((p - q) ** 2 for p, q in zip(a, b)) for a, b in itertools.combinations(points, 2)]


parser = optparse.OptionParser(usage="%prog [options]")
parser.add_option("--n-samples", dest="n_samples", type="int", default=40, help="points to project")
parser.add_option("--n-features", dest="n_features", type="int", default=60, help="their dimension")
parser.add_option("--n-components", dest="n_components", default="auto",
                  help="the dimension projected to: 'auto' or an int")
parser.add_option("--eps", dest="eps", type="float", default=0.5, help="distortion allowed by 'auto'")
parser.add_option("--n-times", dest="n_times", type="int", default=1, help="projections averaged over")
parser.add_option("--seed", dest="random_seed", type="int", default=7)
parser.add_option("--sparse", dest="sparse", action="store_true", default=False,
                  help="project with a matrix of -1, 0 and +1 instead of a Gaussian one")
opts, args = parser.parse_args()
if args:
    parser.error("no positional arguments expected")
auto = opts.n_components == "auto"
n_components = jl_min_dim(opts.n_samples, opts.eps) if auto else int(opts.n_components)

rng = random.Random(opts.random_seed)
points = [[rng.gauss(0, 1) for _ in range(opts.n_features)] for _ in range(opts.n_samples)]
before = squared_distances(points)
worst, mean = [], []
for _ in range(opts.n_times):
    columns = [[entry(rng, opts.sparse) for _ in range(opts.n_features)] for _ in range(n_components)]
    scale = 1 / math.sqrt(n_components)
    projected = [[scale * sum(x * c for x, c in zip(p, col)) for col in columns] for p in points]
    errors = [abs(after / b - 1) for after, b in zip(squared_distances(projected), before)]
    worst.append(max(errors))
    mean.append(sum(errors) / len(errors))

print(f"n_samples \t= {opts.n_samples}")
print(f"n_features \t= {opts.n_features}")
print(f"n_components \t= {n_components}{' (auto)' if auto else ''}")
print(f"max distortion \t= {sum(worst) / len(worst):.4f}")
print(f"mean distortion \t= {sum(mean) / len(mean):.4f}")
