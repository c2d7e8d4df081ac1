"""predict: score raw rows (same columns as the training data) with a model.tar.gz.

    python app/src/predict.py --model model.tar.gz --data raw.csv [--output predictions.csv]

Applies the fitted cleaning, encoding and normalization stored in the artifact, then the model.
"""

import argparse
import json
import os
import sys
import tarfile
import tempfile

import joblib
import numpy as np
import pandas as pd


def load_artifact(path):
    """The model and its preprocessing from a model.tar.gz (or an unpacked folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = path
        if os.path.isfile(path):
            with tarfile.open(path) as tar:
                tar.extractall(tmp)
            folder = tmp
        parts = {}
        for name in ("cleaning", "encoding", "normalization", "schema", "metrics"):
            with open(os.path.join(folder, f"{name}.json")) as fh:
                parts[name] = json.load(fh)
        parts["model"] = joblib.load(os.path.join(folder, "model.joblib"))
    return parts


def features(raw, parts):
    """Raw rows -> the model's feature matrix."""
    cleaning, encoding, norm = parts["cleaning"], parts["encoding"], parts["normalization"]
    missing = [c for c in cleaning["columns"] if c not in raw.columns]
    if missing:
        raise ValueError(f"the data lacks columns {missing}")
    out = pd.DataFrame(index=raw.index)
    for col, spec in cleaning["numeric"].items():
        values = pd.to_numeric(raw[col], errors="coerce").fillna(spec["median"])
        out[col] = values.clip(spec["low"], spec["high"])
    for col, spec in cleaning["categorical"].items():
        values = raw[col].astype(str).where(raw[col].notna(), spec["mode"])
        for cat in encoding["categories"][col]:
            out[f"{col}={cat}"] = (values == cat).astype(float)
    for col, mean, scale in zip(norm["columns"], norm["mean"], norm["scale"]):
        out[col] = (out[col] - mean) / (scale or 1.0)
    return out[parts["schema"]["features"]]


def predict(parts, raw):
    """A copy of ``raw`` with a ``prediction`` column (and class probabilities)."""
    x = features(raw, parts).values
    model = parts["model"]
    result = raw.copy()
    pred = model.predict(x)
    classes = parts["encoding"].get("classes")
    if classes:
        result["prediction"] = [classes[int(i)] for i in pred]
        if hasattr(model, "predict_proba"):
            proba = model.predict_proba(x)
            result["confidence"] = np.round(proba.max(axis=1), 4)
    else:
        result["prediction"] = pred
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="model.tar.gz or an unpacked model folder")
    parser.add_argument("--data", required=True, help="CSV of raw rows")
    parser.add_argument("--output", default="-", help="CSV to write ('-': standard output)")
    args = parser.parse_args()
    parts = load_artifact(args.model)
    raw = pd.read_csv(args.data)
    try:
        result = predict(parts, raw)
    except ValueError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        sys.exit(1)
    if args.output == "-":
        try:
            result.to_csv(sys.stdout, index=False)
        except BrokenPipeError:  # the reader stopped early (| head)
            sys.stderr.close()
    else:
        result.to_csv(args.output, index=False)
        print(f"wrote {len(result)} predictions to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
