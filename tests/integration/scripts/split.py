"""Split a CSV folder into train/test; every path comes from the arguments."""

import argparse
import csv
import os

parser = argparse.ArgumentParser()
parser.add_argument("--input", required=True)
parser.add_argument("--train", required=True)
parser.add_argument("--test", required=True)
args = parser.parse_args()
rows = []
header = None
for name in sorted(os.listdir(args.input)):
    with open(os.path.join(args.input, name), newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows.extend(r for r in reader if r)
cut = int(len(rows) * 0.75)
for folder, part in ((args.train, rows[:cut]), (args.test, rows[cut:])):
    with open(os.path.join(folder, "data.csv"), "w", newline="") as fh:
        csv.writer(fh).writerows([header, *part])
print(f"rows={len(rows)} train={cut}")
