"""A step that checks what a warm start must preserve: argv, __name__, environment."""

import argparse
import json
import os
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--in", dest="inp", required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()
with open(os.path.join(args.inp, "x")) as fh:
    value = int(fh.read()) + 1
result = {
    "value": value,
    "greeting": os.environ["GREETING"],
    "argv0": os.path.basename(sys.argv[0]),
    "name": __name__,
}
with open(os.path.join(args.out, "result.json"), "w") as fh:
    json.dump(result, fh)
