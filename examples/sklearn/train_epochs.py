"""train.py's digits split, trained one epoch at a time (SGDClassifier.partial_fit), printing the held-out
accuracy after every epoch — the only change a script needs for batchsweep to keep its curve and stop it
early.

    python train_epochs.py --alpha 1e-4 --eta0 0.01 --epochs 30
"""
import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alpha", type=float, default=1e-4, help="L2 regularisation")
    parser.add_argument("--eta0", type=float, default=0.01, help="constant learning rate")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0, help="split and model seed")
    parser.add_argument(
        "--pace", type=float, default=0.05, help="seconds to wait per epoch (stands for a bigger model)"
    )
    args = parser.parse_args()

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=args.seed)
    scaler = StandardScaler().fit(X_tr)
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    model = SGDClassifier(alpha=args.alpha, learning_rate="constant", eta0=args.eta0, random_state=args.seed)
    classes = np.unique(y)
    for epoch in range(1, args.epochs + 1):
        model.partial_fit(X_tr, y_tr, classes=classes)
        time.sleep(args.pace)
        print(f"epoch {epoch} val_accuracy={model.score(X_te, y_te):.4f}", flush=True)


if __name__ == "__main__":
    main()
