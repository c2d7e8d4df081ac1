"""Evaluate: paths from arguments; writes a report JSON."""

import argparse
import json
import os
import tarfile

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--test", required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()
with tarfile.open(os.path.join(args.model, "model.tar.gz")) as tar:
    model = json.load(tar.extractfile("model.json"))
with open(os.path.join(args.test, "data.csv")) as fh:
    next(fh)
    ys = [float(line.rsplit(",", 1)[-1]) for line in fh if line.strip()]
mse = sum((y - model["mean"]) ** 2 for y in ys) / len(ys)
with open(os.path.join(args.out, "report.json"), "w") as fh:
    json.dump({"mse": mse}, fh)
print(f"mse={mse:.3f}")
