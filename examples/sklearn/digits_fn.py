"""The digits classifier of train.py as a plain Python function (for `function:` specs).

    from digits_fn import train
    train(model="rf", n_estimators=50, max_depth=8, seed=0)  # -> {"accuracy": ..., "fit_time_s": ...}
"""
import time

from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC


def train(model: str = "rf", n_estimators: int = 50, max_depth: int = 8, seed: int = 0,
          C: float = 1.0, repeat: int = 0) -> dict:
    """Fit `model` (rf, svc or logreg) on 75% of digits; return held-out accuracy and fit time."""
    seed = seed + repeat
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=seed)
    if model == "rf":
        clf = RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth or None,
                                     random_state=seed, n_jobs=1)
    elif model == "svc":
        clf = make_pipeline(StandardScaler(), SVC(C=C, gamma="scale"))
    elif model == "logreg":
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=500))
    else:
        raise ValueError(f"model must be rf, svc or logreg, not {model!r}")
    start = time.perf_counter()
    clf.fit(X_tr, y_tr)
    fit_time = time.perf_counter() - start
    return {"accuracy": round(float(clf.score(X_te, y_te)), 6), "fit_time_s": round(fit_time, 4)}
