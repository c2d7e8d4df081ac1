"""Built-in XGBoost training and batch transform steps against xgboost called directly.

One definition: a Training step on the sagemaker-xgboost:1.7-1 image in algorithm mode (no
entry point) on N csv rows (label first, eight features), a Model step and a Transform step of
N feature rows (SplitType Line). Each step's time is its span in the history: staging the
inputs, the sandboxed process, publishing. Baselines, on the same image environment, each a
plain ``python`` process (start-up and imports included, as the steps pay them):

- train: ``xgb.DMatrix("<file>?format=csv&label_column=0")`` and ``xgb.train`` with the same
  parameters, evaluating the training set each round as the algorithm does, saving the model;
- predict: the whole feature file read with pandas, one ``predict``, one prediction per line.

Ratio = step / baseline, median and best of --runs (fresh store and history per run, so no
cache hit; the two sides take turns). On a shared machine the best of each side is the steadier
figure: other processes only ever add time. The load average is recorded with the table.

    python bench/xgboost.py [--rows 1e6] [--runs 3] [--rounds 50]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import record, table
from sagepipe.config import Settings
from sagepipe.definition import load
from sagepipe.engine.environments import StepEnvironments
from sagepipe.engine.factory import build_engine, start_definition
from sagepipe.engine.history import History
from sagepipe.images import Environment

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-xgboost:1.7-1"
BUCKET = "bench"


def params(rounds: int) -> dict[str, str]:
    return {
        "objective": "reg:squarederror",
        "num_round": str(rounds),
        "max_depth": "6",
        "eta": "0.3",
        "tree_method": "hist",
    }


def write_data(folder: Path, rows: int) -> tuple[Path, Path]:
    """train.csv (label, eight features) and features.csv (the features), abalone-like."""
    import numpy as np

    rng = np.random.default_rng(7)
    x = rng.uniform(0, 1, (rows, 8)).round(4)
    y = (3 + 15 * x[:, 1] + 5 * x[:, 4] ** 2 + rng.normal(0, 0.5, rows)).round(3)
    train, features = folder / "train.csv", folder / "features.csv"
    np.savetxt(train, np.column_stack([y, x]), delimiter=",", fmt="%g")
    np.savetxt(features, x, delimiter=",", fmt="%g")
    return train, features


def definition(rounds: int) -> dict[str, Any]:
    train_data = f"s3://{BUCKET}/data/train/"
    return {
        "Version": "2020-12-01",
        "Parameters": [],
        "Steps": [
            {
                "Name": "Train",
                "Type": "Training",
                "Arguments": {
                    "AlgorithmSpecification": {
                        "TrainingImage": IMAGE,
                        "TrainingInputMode": "File",
                    },
                    "HyperParameters": params(rounds),
                    "InputDataConfig": [
                        {
                            "ChannelName": "train",
                            "ContentType": "text/csv",
                            "DataSource": {
                                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": train_data}
                            },
                        }
                    ],
                    "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/model"},
                    "ResourceConfig": {
                        "InstanceCount": 1,
                        "InstanceType": "ml.m5.2xlarge",
                        "VolumeSizeInGB": 30,
                    },
                    "RoleArn": "arn:aws:iam::111122223333:role/SageMakerRole",
                    "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
                },
            },
            {
                "Name": "Model",
                "Type": "Model",
                "Arguments": {
                    "ExecutionRoleArn": "arn:aws:iam::111122223333:role/SageMakerRole",
                    "PrimaryContainer": {
                        "Image": IMAGE,
                        "ModelDataUrl": {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"},
                    },
                },
            },
            {
                "Name": "Transform",
                "Type": "Transform",
                "Arguments": {
                    "ModelName": {"Get": "Steps.Model.ModelName"},
                    "TransformInput": {
                        "ContentType": "text/csv",
                        "SplitType": "Line",
                        "DataSource": {
                            "S3DataSource": {
                                "S3DataType": "S3Prefix",
                                "S3Uri": f"s3://{BUCKET}/data/batch/",
                            }
                        },
                    },
                    "TransformOutput": {
                        "S3OutputPath": f"s3://{BUCKET}/predictions",
                        "AssembleWith": "Line",
                        "Accept": "text/csv",
                    },
                    "TransformResources": {"InstanceCount": 1, "InstanceType": "ml.m5.2xlarge"},
                },
            },
        ],
    }


def pipeline(train: Path, features: Path, home: Path, rounds: int) -> dict[str, float]:
    """One execution on a fresh store and history: each step's span, and the whole run's."""
    shutil.rmtree(home, ignore_errors=True)
    settings = Settings.from_env(
        cwd=ROOT, environ={"SAGEPIPE_HOME": str(home), "SAGEPIPE_BUCKET": BUCKET}
    )
    engine = build_engine(settings)
    engine.store.ensure_bucket(BUCKET)
    engine.store.put_file(f"s3://{BUCKET}/data/train/train.csv", train)
    engine.store.put_file(f"s3://{BUCKET}/data/batch/features.csv", features)
    start = time.perf_counter()
    execution = start_definition(engine, load(definition(rounds)), "bench-xgboost", {})
    status = execution.wait()
    wall = time.perf_counter() - start
    if status != "Succeeded":
        raise SystemExit(
            f"the pipeline ended {status}: {execution.describe().get('FailureReason')}"
        )
    steps = {s.name: s for s in History(settings.history_path).steps(execution.execution_id)}
    out = {name: (s.ended or 0) - (s.started or 0) for name, s in steps.items()}
    out["wall"] = wall
    return out


TRAIN = """
import sys, time, xgboost as xgb
start = time.perf_counter()
dtrain = xgb.DMatrix(sys.argv[1] + "?format=csv&label_column=0")
loaded = time.perf_counter()
params = {{k: v for k, v in {params!r}.items() if k != "num_round"}}
bst = xgb.train(params, dtrain, num_boost_round={rounds}, evals=[(dtrain, "train")])
bst.save_model(sys.argv[2])
print("load %.3f train %.3f" % (loaded - start, time.perf_counter() - loaded), file=sys.stderr)
"""

PREDICT = """
import sys, pandas as pd, xgboost as xgb
bst = xgb.Booster()
bst.load_model(sys.argv[1])
x = pd.read_csv(sys.argv[2], header=None).to_numpy()
with open(sys.argv[3], "w") as fh:
    fh.write("\\n".join(map(str, bst.predict(xgb.DMatrix(x)).tolist())) + "\\n")
"""


def process(env: Environment, code: str, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run(env.argv(["python", "-c", textwrap.dedent(code), *args]), check=True)
    return time.perf_counter() - start


def row(
    what: str, step: str, base: str, best: dict[str, float], med: dict[str, float], target: str
) -> list[str]:
    """One line of the table: times, the ratios of the bests and of the medians."""
    return [
        what,
        f"{best[step]:.2f} / {med[step]:.2f}",
        f"{best[base]:.2f} / {med[base]:.2f}",
        f"{best[step] / best[base]:.2f}x",
        f"{med[step] / med[base]:.2f}x",
        target,
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=float, default=1e6)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    rows, rounds = int(args.rows), args.rounds
    settings = Settings.from_env(cwd=ROOT, environ=dict(os.environ))
    env = StepEnvironments(settings).environment(IMAGE, print)
    with tempfile.TemporaryDirectory(prefix="bench-xgboost-") as tmp:
        work = Path(tmp)
        train, features = write_data(work, rows)
        sizes = train.stat().st_size / 1e6, features.stat().st_size / 1e6
        model, out = work / "xgboost-model", work / "predictions.out"
        samples: dict[str, list[float]] = {}
        for i in range(args.runs):  # the two sides take turns, run by run
            spans = pipeline(train, features, work / "home", rounds)
            for key, value in spans.items():
                samples.setdefault(key, []).append(value)
            samples.setdefault("train baseline", []).append(
                process(
                    env, TRAIN.format(params=params(rounds), rounds=rounds), str(train), str(model)
                )
            )
            samples.setdefault("predict baseline", []).append(
                process(env, PREDICT, str(model), str(features), str(out))
            )
            print(f"run {i + 1}: " + json.dumps({k: round(v[-1], 2) for k, v in samples.items()}))
    m = {k: statistics.median(v) for k, v in samples.items()}
    best = {k: min(v) for k, v in samples.items()}
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    body = (
        f"{rows:,} csv rows (label + 8 features, {sizes[0]:.0f} MB; "
        f"transform input {sizes[1]:.0f} MB), sagemaker-xgboost:1.7-1 "
        f"(xgboost 1.7.4, Python 3.9), {rounds} rounds, max_depth 6, eta 0.3, hist; "
        f"{args.runs} runs, the sides taking turns; step = its span in the history (staging, "
        "sandboxed process, publishing); baselines are plain `python` processes on the same "
        f"environment. Load average at the end (1/5/15 min): {load}.\n\n"
        + table(
            [
                "what",
                "step best / median (s)",
                "xgboost directly best / median (s)",
                "ratio of bests",
                "ratio of medians",
                "target",
            ],
            [
                row(
                    "train (built-in algorithm vs DMatrix(csv) + xgb.train)",
                    "Train",
                    "train baseline",
                    best,
                    m,
                    "<= 1.15x",
                ),
                row(
                    "batch transform (SplitType Line, 6 MB batches) vs one predict of the file",
                    "Transform",
                    "predict baseline",
                    best,
                    m,
                    "<= 1.5x",
                ),
            ],
        )
        + f"\n\nWhole pipeline (train, model, transform): best {best['wall']:.2f} s, median "
        f"{m['wall']:.2f} s."
    )
    print(body)
    record(f"xgboost: built-in training and batch transform on {rows:,} rows", body)


if __name__ == "__main__":
    main()
