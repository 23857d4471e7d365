# Written for tests/test_public_scripts.py after the pattern of MLflow's ElasticNet wine example
# (examples/sklearn_elasticnet_wine in github.com/mlflow/mlflow): it downloads the wine-quality CSV, reads
# alpha and l1_ratio from sys.argv by position with defaults, and logs params, metrics and the model to MLflow.
import sys
from urllib.parse import urlparse

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from sklearn.linear_model import ElasticNet
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split


def scores(truth, guess):
    return np.sqrt(mean_squared_error(truth, guess)), mean_absolute_error(truth, guess), r2_score(truth, guess)


if __name__ == "__main__":
    np.random.seed(40)
    csv_url = "http://archive.ics.uci.edu/ml/machine-learning-databases/wine-quality/winequality-red.csv"
    wine = pd.read_csv(csv_url, sep=";")
    train, test = train_test_split(wine)
    alpha = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
    l1_ratio = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
    with mlflow.start_run():
        model = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, random_state=42)
        model.fit(train.drop(columns=["quality"]), train[["quality"]])
        rmse, mae, r2 = scores(test[["quality"]], model.predict(test.drop(columns=["quality"])))
        print(f"Elasticnet model (alpha={alpha:f}, l1_ratio={l1_ratio:f}):")
        print(f"  RMSE: {rmse}")
        print(f"  MAE: {mae}")
        print(f"  R2: {r2}")
        for name, value in (("alpha", alpha), ("l1_ratio", l1_ratio)):
            mlflow.log_param(name, value)
        for name, value in (("rmse", rmse), ("r2", r2), ("mae", mae)):
            mlflow.log_metric(name, value)
        if urlparse(mlflow.get_tracking_uri()).scheme != "file":
            mlflow.sklearn.log_model(model, "model", registered_model_name="ElasticnetWineModel")
        else:
            mlflow.sklearn.log_model(model, "model")
