"""clean_data: duplicates, missing targets, type fixes, imputation and outliers.

- exact duplicate rows are dropped;
- rows without a target are dropped;
- text columns whose values are numbers are converted; a column that is mostly numbers with
  some text cannot be parsed and fails the step;
- numeric features: missing values imputed with the median; outliers clipped to
  [Q1 - 3*IQR, Q3 + 3*IQR] (bounds recorded, so scoring applies the same);
- categorical features: missing values imputed with the most frequent value;
- an all-missing feature, a categorical column with too many distinct values to encode, or a
  classification target with one class fails the step with one line.
The fitted values are written to cleaning.json for scoring raw rows later.
"""

import argparse
import json
import os
import sys

import pandas as pd

MAX_CATEGORIES = 50


def fail(message):
    """Stop the step with one line that becomes its FailureReason."""
    print(f"ERROR: {message}", file=sys.stderr)
    sys.exit(1)


def parse_numbers(df, target):
    numeric = []
    for col in df.columns:
        if pd.api.types.is_numeric_dtype(df[col]):
            numeric.append(col)
            continue
        values = df[col].dropna().astype(str).str.strip()
        if values.empty:
            continue
        parsed = pd.to_numeric(values, errors="coerce")
        share = parsed.notna().mean()
        if share == 1.0:
            df[col] = pd.to_numeric(
                df[col].astype(str).str.strip().replace({"": None, "nan": None}), errors="coerce"
            )
            numeric.append(col)
            print(f"column '{col}': text converted to numbers")
        elif share >= 0.5 and col != target:
            bad = values[parsed.isna()].iloc[0]
            fail(
                f"column '{col}' cannot be parsed as numbers: {int((1 - share) * len(values))} values such as {bad!r}"
            )
    return numeric


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--input-dir", default="/opt/ml/processing/input/raw")
    parser.add_argument("--output-dir", default="/opt/ml/processing/output/clean")
    parser.add_argument("--artifacts-dir", default="/opt/ml/processing/output/artifacts")
    parser.add_argument("--target", required=True)
    parser.add_argument(
        "--problem-type", choices=["classification", "regression"], default="classification"
    )
    args = parser.parse_args()

    df = pd.read_csv(os.path.join(args.input_dir, "raw.csv"))
    rows_in = len(df)
    if rows_in == 0:
        fail("the input data is empty: no rows")
    if args.target not in df.columns:
        fail(f"target column '{args.target}' is not in the data")
    df = df.drop_duplicates()
    print(f"rows in: {rows_in}; duplicates dropped: {rows_in - len(df)}")
    before = len(df)
    df = df[df[args.target].notna()]
    print(f"rows without target '{args.target}' dropped: {before - len(df)}")
    if df.empty:
        fail(f"no rows have a value for the target '{args.target}'")

    numeric = parse_numbers(df, args.target)
    features = [c for c in df.columns if c != args.target]
    empty = [c for c in features if df[c].isna().all()]
    if empty:
        fail(f"feature {empty[0]!r} has no values at all (all missing); drop it from the input")
    if args.problem_type == "regression":
        if args.target not in numeric:
            fail(f"regression target '{args.target}' is not numeric")
    else:
        classes = df[args.target].astype(str).value_counts()
        if len(classes) < 2:
            fail(
                f"target '{args.target}' has one class ({classes.index[0]!r}); classification needs at least two"
            )
        print("class balance: " + ", ".join(f"{k}={v}" for k, v in classes.items()))

    cleaning = {"target": args.target, "numeric": {}, "categorical": {}, "columns": features}
    for col in features:
        missing = int(df[col].isna().sum())
        if col in numeric:
            median = float(df[col].median())
            q1, q3 = df[col].quantile(0.25), df[col].quantile(0.75)
            lo, hi = float(q1 - 3 * (q3 - q1)), float(q3 + 3 * (q3 - q1))
            df[col] = df[col].fillna(median)
            clipped = int(((df[col] < lo) | (df[col] > hi)).sum())
            df[col] = df[col].clip(lo, hi)
            cleaning["numeric"][col] = {"median": median, "low": lo, "high": hi}
            print(
                f"column '{col}': {missing} missing imputed with median {median:.4g}, {clipped} outliers clipped"
            )
        else:
            values = df[col].astype(str).where(df[col].notna())
            distinct = values.nunique()
            if distinct > MAX_CATEGORIES and distinct > 0.5 * len(df):
                fail(
                    f"column '{col}' cannot be encoded: {distinct} distinct text values (an id or free text?)"
                )
            mode = str(values.mode().iloc[0])
            df[col] = values.fillna(mode)
            cleaning["categorical"][col] = {"mode": mode}
            print(
                f"column '{col}': {missing} missing imputed with '{mode}' ({distinct} categories)"
            )
    os.makedirs(args.output_dir, exist_ok=True)
    os.makedirs(args.artifacts_dir, exist_ok=True)
    df.to_csv(os.path.join(args.output_dir, "clean.csv"), index=False)
    with open(os.path.join(args.artifacts_dir, "cleaning.json"), "w") as fh:
        json.dump(cleaning, fh, indent=2)
    print(f"rows out: {len(df)}")


if __name__ == "__main__":
    main()
