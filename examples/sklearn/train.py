"""Train a scikit-learn classifier on the digits data set (ships with scikit-learn).

Holds out 25% of the 1,797 8x8 digit images (stratified split fixed by --seed + --repeat),
fits the chosen model and writes ``metrics.json`` with the held-out ``accuracy`` and
``fit_time_s`` in the working directory.

    python train.py --model rf --n_estimators 50 --max_depth 8 --seed 0
    python train.py --model svc --C 3.0
"""
import argparse
import json
import time

from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC


def make_model(name: str, C: float, n_estimators: int, max_depth: int, seed: int):
    if name == "rf":
        return RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth or None,
                                      random_state=seed, n_jobs=1)
    if name == "svc":
        return make_pipeline(StandardScaler(), SVC(C=C, gamma="scale"))
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=500))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["rf", "svc", "logreg"], default="rf")
    parser.add_argument("--C", type=float, default=1.0, help="regularisation (svc, logreg)")
    parser.add_argument("--n_estimators", type=int, default=50, help="trees (rf)")
    parser.add_argument("--max_depth", type=int, default=8, help="tree depth, 0 = unlimited (rf)")
    parser.add_argument("--seed", type=int, default=0, help="split and model seed")
    parser.add_argument("--repeat", type=int, default=0, help="repetition index, added to the seed")
    args = parser.parse_args()

    seed = args.seed + args.repeat
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=seed)
    model = make_model(args.model, args.C, args.n_estimators, args.max_depth, seed)
    start = time.perf_counter()
    model.fit(X_tr, y_tr)
    fit_time = time.perf_counter() - start
    metrics = {"accuracy": round(float(model.score(X_te, y_te)), 6), "fit_time_s": round(fit_time, 4)}
    with open("metrics.json", "w") as f:
        json.dump(metrics, f)
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
