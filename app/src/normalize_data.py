"""normalize_data: a StandardScaler fitted on the training split only, applied to every split.

The numeric (non one-hot) features are scaled; the fitted means and scales are written to
normalization.json (and the scaler itself to scaler.joblib) so scoring applies the same.
"""

import argparse
import json
import os

import joblib
import pandas as pd
from sklearn.preprocessing import StandardScaler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--input-dir", default="/opt/ml/processing/input/splits")
    parser.add_argument("--output-dir", default="/opt/ml/processing/output/normalized")
    parser.add_argument("--artifacts-dir", default="/opt/ml/processing/output/artifacts")
    parser.add_argument("--target", required=True)
    args = parser.parse_args()

    splits = {
        n: pd.read_csv(os.path.join(args.input_dir, n, f"{n}.csv"))
        for n in ("train", "validation", "test")
    }
    train = splits["train"]
    columns = [c for c in train.columns if c != args.target and "=" not in c]
    scaler = StandardScaler().fit(train[columns].astype(float))
    for name, part in splits.items():
        part[columns] = scaler.transform(part[columns].astype(float))
        folder = os.path.join(args.output_dir, name)
        os.makedirs(folder, exist_ok=True)
        part.to_csv(os.path.join(folder, f"{name}.csv"), index=False)
        print(f"{name}: {len(part)} rows normalized")
    for col, mean, scale in zip(columns, scaler.mean_, scaler.scale_):
        print(f"'{col}': mean {mean:.4g}, scale {scale:.4g}")
    os.makedirs(args.artifacts_dir, exist_ok=True)
    joblib.dump(scaler, os.path.join(args.artifacts_dir, "scaler.joblib"))
    with open(os.path.join(args.artifacts_dir, "normalization.json"), "w") as fh:
        json.dump(
            {
                "columns": columns,
                "mean": [float(m) for m in scaler.mean_],
                "scale": [float(s) for s in scaler.scale_],
            },
            fh,
            indent=2,
        )


if __name__ == "__main__":
    main()
