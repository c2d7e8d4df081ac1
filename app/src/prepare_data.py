"""prepare_data: train/validation/test split (stratified for classification) and encoding.

Categorical features are one-hot encoded with the categories seen in the training split
(unseen categories encode as all zeros); a classification target is encoded as the index of its
class in sorted order. The encoding is written to encoding.json for scoring.
"""

import argparse
import json
import os
import sys

import pandas as pd
from sklearn.model_selection import train_test_split


def fail(message):
    """Stop the step with one line that becomes its FailureReason."""
    print(f"ERROR: {message}", file=sys.stderr)
    sys.exit(1)


def encode(df, target, categories, classes):
    out = df.drop(columns=[target] + list(categories))
    for col, cats in categories.items():
        values = df[col].astype(str)
        for cat in cats:
            out[f"{col}={cat}"] = (values == cat).astype(float)
    if classes is None:
        out.insert(0, target, df[target].astype(float))
    else:
        index = {c: i for i, c in enumerate(classes)}
        out.insert(0, target, df[target].astype(str).map(index).astype(int))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--input-dir", default="/opt/ml/processing/input/clean")
    parser.add_argument("--cleaning-dir", default="/opt/ml/processing/input/cleaning")
    parser.add_argument("--output-dir", default="/opt/ml/processing/output/splits")
    parser.add_argument("--artifacts-dir", default="/opt/ml/processing/output/artifacts")
    parser.add_argument("--target", required=True)
    parser.add_argument(
        "--problem-type", choices=["classification", "regression"], default="classification"
    )
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--validation-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if (
        not 0 < args.test_fraction < 1
        or not 0 < args.validation_fraction < 1
        or args.test_fraction + args.validation_fraction >= 1
    ):
        fail("test and validation fractions must be in (0, 1) and sum to less than 1")

    df = pd.read_csv(os.path.join(args.input_dir, "clean.csv"))
    with open(os.path.join(args.cleaning_dir, "cleaning.json")) as fh:
        cleaning = json.load(fh)
    classification = args.problem_type == "classification"
    strat = df[args.target].astype(str) if classification else None
    try:
        rest, test = train_test_split(
            df, test_size=args.test_fraction, random_state=args.seed, stratify=strat
        )
        strat = rest[args.target].astype(str) if classification else None
        val_share = args.validation_fraction / (1 - args.test_fraction)
        train, val = train_test_split(
            rest, test_size=val_share, random_state=args.seed, stratify=strat
        )
    except ValueError as exc:
        fail(f"cannot split the data: {exc}")
    print(
        f"split: train={len(train)} validation={len(val)} test={len(test)} (seed {args.seed}{', stratified' if classification else ''})"
    )

    categories = {
        c: sorted(train[c].astype(str).unique().tolist()) for c in cleaning["categorical"]
    }
    classes = sorted(df[args.target].astype(str).unique().tolist()) if classification else None
    for col, cats in categories.items():
        print(f"one-hot '{col}': {len(cats)} categories ({', '.join(cats)})")
    if classes:
        print(f"target classes: {', '.join(classes)}")
    os.makedirs(args.output_dir, exist_ok=True)
    for name, part in (("train", train), ("validation", val), ("test", test)):
        folder = os.path.join(args.output_dir, name)
        os.makedirs(folder, exist_ok=True)
        encode(part, args.target, categories, classes).to_csv(
            os.path.join(folder, f"{name}.csv"), index=False
        )
    os.makedirs(args.artifacts_dir, exist_ok=True)
    with open(os.path.join(args.artifacts_dir, "encoding.json"), "w") as fh:
        json.dump(
            {"target": args.target, "categories": categories, "classes": classes}, fh, indent=2
        )


if __name__ == "__main__":
    main()
