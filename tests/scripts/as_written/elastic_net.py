"""Fits an elastic net to a synthetic regression problem by coordinate descent and logs it to MLflow:
`python elastic_net.py [ALPHA [L1_RATIO]]`."""

import math
import random
import sys

import mlflow

N_ROWS = 240
TRAIN_ROWS = 180
SEED = 40

Rows = list[list[float]]


def make_data(n: int, seed: int) -> tuple[Rows, list[float]]:
    """y = 3 x0 - 2 x1 + 0.5 x2 + noise; x3 and x4 play no part."""
    rng = random.Random(seed)
    xs = [[rng.gauss(0, 1) for _ in range(5)] for _ in range(n)]
    return xs, [3 * x[0] - 2 * x[1] + 0.5 * x[2] + rng.gauss(0, 1) for x in xs]


def soft_threshold(value: float, limit: float) -> float:
    return math.copysign(max(abs(value) - limit, 0.0), value)


def fit(xs: Rows, ys: list[float], alpha: float, l1_ratio: float) -> tuple[list[float], float]:
    """Weights and intercept minimising mean squared error / 2 + alpha * (l1_ratio * |w|_1
    + (1 - l1_ratio) / 2 * |w|^2)."""
    n, p = len(xs), len(xs[0])
    means = [sum(x[j] for x in xs) / n for j in range(p)]
    centred = [[x[j] - means[j] for j in range(p)] for x in xs]
    y_mean = sum(ys) / n
    residual = [y - y_mean for y in ys]
    scale = [sum(x[j] ** 2 for x in centred) / n for j in range(p)]
    w = [0.0] * p
    for _ in range(200):  # sweeps: converged well past float precision on this problem
        for j in range(p):
            rho = sum(x[j] * r for x, r in zip(centred, residual)) / n + scale[j] * w[j]
            new = soft_threshold(rho, alpha * l1_ratio) / (scale[j] + alpha * (1 - l1_ratio))
            residual = [r - x[j] * (new - w[j]) for x, r in zip(centred, residual)]
            w[j] = new
    return w, y_mean - sum(wj * m for wj, m in zip(w, means))


def rmse(xs: Rows, ys: list[float], w: list[float], b: float) -> float:
    errors = [y - b - sum(wj * xj for wj, xj in zip(w, x)) for x, y in zip(xs, ys)]
    return math.sqrt(sum(e * e for e in errors) / len(errors))


if __name__ == "__main__":
    alpha = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
    l1_ratio = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
    xs, ys = make_data(N_ROWS, SEED)
    train_xs, train_ys, test_xs, test_ys = xs[:TRAIN_ROWS], ys[:TRAIN_ROWS], xs[TRAIN_ROWS:], ys[TRAIN_ROWS:]
    with mlflow.start_run():
        w, b = fit(train_xs, train_ys, alpha, l1_ratio)
        train, test = rmse(train_xs, train_ys, w, b), rmse(test_xs, test_ys, w, b)
        print(f"Elastic net (alpha={alpha:f}, l1_ratio={l1_ratio:f}):")
        print(f"  train RMSE: {train}")
        print(f"  test RMSE: {test}")
        print(f"  weights: {[round(v, 4) for v in w]}")
        mlflow.log_param("alpha", alpha)
        mlflow.log_param("l1_ratio", l1_ratio)
        mlflow.log_metric("train_rmse", train)
        mlflow.log_metric("rmse", test)
