"""evaluate: test-split metrics into evaluation.json (a PropertyFile the quality gate reads).

``quality`` holds the gate's metric: accuracy for classification, r2 for regression.
"""

import argparse
import json
import os
import tarfile
import tempfile

import joblib
import numpy as np
import pandas as pd
from sklearn import metrics


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", default="/opt/ml/processing/input/model")
    parser.add_argument("--test-dir", default="/opt/ml/processing/input/test")
    parser.add_argument("--output-dir", default="/opt/ml/processing/output/evaluation")
    parser.add_argument("--target", required=True)
    parser.add_argument(
        "--problem-type", choices=["classification", "regression"], default="classification"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(os.path.join(args.model_dir, "model.tar.gz")) as tar:
            tar.extractall(tmp)
        model = joblib.load(os.path.join(tmp, "model.joblib"))
        with open(os.path.join(tmp, "schema.json")) as fh:
            schema = json.load(fh)
    test = pd.read_csv(os.path.join(args.test_dir, "test.csv"))
    x, y = test[schema["features"]].values, test[args.target].values
    pred = model.predict(x)
    if args.problem_type == "classification":
        detail = {
            "accuracy": float(metrics.accuracy_score(y, pred)),
            "f1_macro": float(metrics.f1_score(y, pred, average="macro")),
            "precision_macro": float(
                metrics.precision_score(y, pred, average="macro", zero_division=0)
            ),
            "recall_macro": float(metrics.recall_score(y, pred, average="macro", zero_division=0)),
        }
        quality = {"name": "accuracy", "value": detail["accuracy"]}
    else:
        detail = {
            "r2": float(metrics.r2_score(y, pred)),
            "rmse": float(np.sqrt(metrics.mean_squared_error(y, pred))),
            "mae": float(metrics.mean_absolute_error(y, pred)),
        }
        quality = {"name": "r2", "value": detail["r2"]}
    report = {"quality": quality, "metrics": detail, "rows": len(test)}
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "evaluation.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    for name, value in detail.items():
        print(f"test:{name}={value:.4f}")


if __name__ == "__main__":
    main()
