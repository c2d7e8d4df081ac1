"""train: fit the scikit-learn model a parameter chooses; log validation metrics; pack the model.

model.tar.gz holds model.joblib, the fitted preprocessing (cleaning.json, encoding.json,
normalization.json), schema.json (raw columns, feature order, problem type) and metrics.json,
so that predict.py can score raw rows with it.
"""

import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile

import joblib
import numpy as np
import pandas as pd
from sklearn import metrics
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge

MODEL_TYPES = ("random_forest", "gradient_boosting", "linear")


def fail(message):
    """Stop the step with one line that becomes its FailureReason."""
    print(f"ERROR: {message}", file=sys.stderr)
    sys.exit(1)


def build_model(kind, classification, args):
    depth = args.max_depth or None
    if kind == "random_forest":
        cls = RandomForestClassifier if classification else RandomForestRegressor
        return cls(
            n_estimators=args.n_estimators,
            max_depth=depth,
            random_state=args.seed,
            n_jobs=args.jobs,
        )
    if kind == "gradient_boosting":
        cls = GradientBoostingClassifier if classification else GradientBoostingRegressor
        return cls(
            n_estimators=args.n_estimators,
            max_depth=depth or 3,
            learning_rate=args.learning_rate,
            random_state=args.seed,
        )
    if kind == "linear":
        if classification:
            return LogisticRegression(C=args.regularization, max_iter=2000)
        return Ridge(alpha=1.0 / args.regularization)
    fail(f"model type {kind!r} is unknown; use one of {', '.join(MODEL_TYPES)}")


def score(model, x, y, classification):
    pred = model.predict(x)
    if classification:
        return {
            "accuracy": float(metrics.accuracy_score(y, pred)),
            "f1_macro": float(metrics.f1_score(y, pred, average="macro")),
        }
    return {
        "r2": float(metrics.r2_score(y, pred)),
        "rmse": float(np.sqrt(metrics.mean_squared_error(y, pred))),
        "mae": float(metrics.mean_absolute_error(y, pred)),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-dir", default="/opt/ml/processing/input/train")
    parser.add_argument("--validation-dir", default="/opt/ml/processing/input/validation")
    parser.add_argument(
        "--artifacts-dirs",
        default="/opt/ml/processing/input/cleaning,/opt/ml/processing/input/encoding,/opt/ml/processing/input/normalization",
    )
    parser.add_argument("--model-dir", default="/opt/ml/processing/output/model")
    parser.add_argument("--target", required=True)
    parser.add_argument(
        "--problem-type", choices=["classification", "regression"], default="classification"
    )
    parser.add_argument("--model-type", default="random_forest")
    parser.add_argument("--n-estimators", type=int, default=200)
    parser.add_argument("--max-depth", type=int, default=0, help="0: unlimited")
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--regularization", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    classification = args.problem_type == "classification"

    train = pd.read_csv(os.path.join(args.train_dir, "train.csv"))
    val = pd.read_csv(os.path.join(args.validation_dir, "validation.csv"))
    features = [c for c in train.columns if c != args.target]
    model = build_model(args.model_type, classification, args)
    print(f"training {type(model).__name__} on {len(train)} rows, {len(features)} features")
    model.fit(train[features].values, train[args.target].values)
    validation = score(model, val[features].values, val[args.target].values, classification)
    train_metrics = score(model, train[features].values, train[args.target].values, classification)
    for name, value in validation.items():
        print(f"validation:{name}={value:.4f}")
    for name, value in train_metrics.items():
        print(f"train:{name}={value:.4f}")

    with tempfile.TemporaryDirectory() as tmp:
        joblib.dump(model, os.path.join(tmp, "model.joblib"))
        for folder in args.artifacts_dirs.split(","):
            for name in os.listdir(folder):
                shutil.copy(os.path.join(folder, name), os.path.join(tmp, name))
        with open(os.path.join(tmp, "cleaning.json")) as fh:
            raw_columns = json.load(fh)["columns"]
        schema = {
            "target": args.target,
            "problem_type": args.problem_type,
            "raw_columns": raw_columns,
            "features": features,
            "model_type": args.model_type,
        }
        with open(os.path.join(tmp, "schema.json"), "w") as fh:
            json.dump(schema, fh, indent=2)
        with open(os.path.join(tmp, "metrics.json"), "w") as fh:
            json.dump({"validation": validation, "train": train_metrics}, fh, indent=2)
        os.makedirs(args.model_dir, exist_ok=True)
        with tarfile.open(os.path.join(args.model_dir, "model.tar.gz"), "w:gz") as tar:
            for name in sorted(os.listdir(tmp)):
                tar.add(os.path.join(tmp, name), arcname=name)
    print(f"wrote model.tar.gz ({', '.join(sorted(os.listdir(args.model_dir)))})")


if __name__ == "__main__":
    main()
