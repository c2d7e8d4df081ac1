"""read_data: load the raw table (CSV or Parquet, one object or part files) and check its schema.

Reads every .csv / .parquet file under the input folder (part files in name order), checks the
expected columns and the target are there, and writes one CSV for the next step.
Targets SageMaker's scikit-learn image 1.2-1 (scikit-learn 1.2.1, pandas 1.1.3, no pyarrow:
Parquet input works where pyarrow is installed, such as the local engine).
"""

import argparse
import os
import sys

import pandas as pd


def fail(message):
    """Stop the step with one line that becomes its FailureReason."""
    print(f"ERROR: {message}", file=sys.stderr)
    sys.exit(1)


def read_table(folder):
    files = []
    for root, _, names in os.walk(folder):
        files.extend(os.path.join(root, n) for n in names if not n.startswith("."))
    files = sorted(f for f in files if f.endswith((".csv", ".parquet", ".pq")))
    if not files:
        fail(f"no .csv or .parquet files under the input {folder}")
    frames = []
    for path in files:
        try:
            frame = (
                pd.read_parquet(path) if path.endswith((".parquet", ".pq")) else pd.read_csv(path)
            )
        except pd.errors.EmptyDataError:
            continue
        except Exception as exc:  # a file the readers reject: say which
            fail(f"cannot read {os.path.basename(path)}: {type(exc).__name__}: {exc}")
        frames.append(frame)
        print(f"read {os.path.basename(path)}: {len(frame)} rows, {frame.shape[1]} columns")
    if not frames or sum(len(f) for f in frames) == 0:
        fail("the input data is empty: no rows")
    columns = list(frames[0].columns)
    for frame in frames[1:]:
        if list(frame.columns) != columns:
            fail("part files have different columns; every part must have the same header")
    return pd.concat(frames, ignore_index=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--input-dir", default="/opt/ml/processing/input/data")
    parser.add_argument("--output-dir", default="/opt/ml/processing/output/raw")
    parser.add_argument("--target", required=True)
    parser.add_argument("--expected-columns", default="", help="comma-separated; empty: any")
    args = parser.parse_args()

    df = read_table(args.input_dir)
    df.columns = [str(c).strip() for c in df.columns]
    expected = [c.strip() for c in args.expected_columns.split(",") if c.strip()]
    missing = [c for c in expected if c not in df.columns]
    if missing:
        fail(f"schema mismatch: missing columns {missing}; found {list(df.columns)}")
    if args.target not in df.columns:
        fail(f"target column '{args.target}' is not in the data; columns are {list(df.columns)}")
    print(f"rows: {len(df)}, columns: {df.shape[1]} ({', '.join(df.columns)})")
    os.makedirs(args.output_dir, exist_ok=True)
    df.to_csv(os.path.join(args.output_dir, "raw.csv"), index=False)
    print(f"wrote raw.csv: {len(df)} rows")


if __name__ == "__main__":
    main()
