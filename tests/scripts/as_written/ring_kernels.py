"""Tells a disc of points from the ring around it with a kernel nearest-mean rule. Its settings are the
module-level values below: edit them and run `python ring_kernels.py`."""

import math
import random

kernel = "linear"  # linear, rbf or poly
gamma = 10
degree = 3
test_split = 0.25
random_seed = 0
n_points = 80

Point = tuple[float, float]
Labelled = list[tuple[Point, int]]
Model = dict[int, tuple[list[Point], float]]


def sample(rng: random.Random, n: int) -> Labelled:
    """n points: label 0 within radius 1, label 1 between radii 1.2 and 2.4."""
    out = []
    for i in range(n):
        label = i % 2
        radius = rng.uniform(0, 1) if label == 0 else rng.uniform(1.2, 2.4)
        angle = rng.uniform(0, 2 * math.pi)
        out.append(((radius * math.cos(angle), radius * math.sin(angle)), label))
    return out


def similarity(a: Point, b: Point) -> float:
    dot = a[0] * b[0] + a[1] * b[1]
    if kernel == "rbf":
        return math.exp(-gamma * ((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2))
    if kernel == "poly":
        return (gamma * dot + 1) ** degree
    return dot


def fit(train: Labelled) -> Model:
    """Per label: its points and the squared norm of their mean in the kernel's feature space."""
    model: Model = {}
    for label in (0, 1):
        xs = [x for x, y in train if y == label]
        model[label] = (xs, sum(similarity(a, b) for a in xs for b in xs) / len(xs) ** 2)
    return model


def predict(model: Model, x: Point) -> int:
    def distance(label: int) -> float:  # squared distance to the label's mean, less the k(x, x) both share
        xs, norm = model[label]
        return norm - 2 * sum(similarity(x, a) for a in xs) / len(xs)

    return min((0, 1), key=distance)


def accuracy(model: Model, points: Labelled) -> float:
    return sum(predict(model, x) == y for x, y in points) / len(points)


points = sample(random.Random(random_seed), n_points)
cut = int(len(points) * (1 - test_split))
model = fit(points[:cut])
print(f"Train accuracy: {accuracy(model, points[:cut])}")
print(f"Test accuracy: {accuracy(model, points[cut:])}")
