"""The example pipeline on synthetic rows, against the same stages as plain function calls.

Baseline: the app's seven step scripts (read, clean, prepare, normalize, train, evaluate,
publish) called one after the other in one process, on folders, without sagepipe: the work
itself. Pipeline: the same scripts as a sagepipe execution (bwrap when available, a fresh
store and history per run so nothing is cached). Ratio = pipeline / baseline, median of RUNS;
peak RSS per step from the engine (wait4 of each step's process tree).

    python bench/e2e.py [--rows 1e6] [--runs 3] [--big 1e7 [--big-only]]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import record, table
from bench.generate_data import write
from sagepipe.config import Settings
from sagepipe.definition import compile_pipeline
from sagepipe.engine.environments import StepEnvironments
from sagepipe.engine.factory import build_engine, start_definition, upload_code
from sagepipe.engine.history import History
from sagepipe.images import Environment

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "bench"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
SRC = ROOT / "app" / "src"
PARAMS = {"NEstimators": "10", "MaxDepth": "10", "QualityThreshold": "0.5"}
STEPS = [
    "read_data",
    "clean_data",
    "prepare_data",
    "normalize_data",
    "train",
    "evaluate",
    "publish_model",
]


def baseline(data: Path, work: Path, python: str, processes: bool = False) -> float:
    """The seven scripts as function calls in one process (or each as a plain process), on
    ``python``: the steps' environment, so that both sides run the same library versions."""
    shutil.rmtree(work, ignore_errors=True)
    w = {
        k: work / k
        for k in ("raw", "clean", "art1", "splits", "art2", "norm", "art3", "model", "eval", "pub")
    }
    target = ["--target", "species"]
    calls = [
        ("read_data", ["--input-dir", str(data), "--output-dir", str(w["raw"]), *target]),
        (
            "clean_data",
            [
                "--input-dir",
                str(w["raw"]),
                "--output-dir",
                str(w["clean"]),
                "--artifacts-dir",
                str(w["art1"]),
                *target,
            ],
        ),
        (
            "prepare_data",
            [
                "--input-dir",
                str(w["clean"]),
                "--cleaning-dir",
                str(w["art1"]),
                "--output-dir",
                str(w["splits"]),
                "--artifacts-dir",
                str(w["art2"]),
                *target,
            ],
        ),
        (
            "normalize_data",
            [
                "--input-dir",
                str(w["splits"]),
                "--output-dir",
                str(w["norm"]),
                "--artifacts-dir",
                str(w["art3"]),
                *target,
            ],
        ),
        (
            "train",
            [
                "--train-dir",
                str(w["norm"] / "train"),
                "--validation-dir",
                str(w["norm"] / "validation"),
                "--artifacts-dirs",
                f"{w['art1']},{w['art2']},{w['art3']}",
                "--model-dir",
                str(w["model"]),
                "--n-estimators",
                PARAMS["NEstimators"],
                "--max-depth",
                PARAMS["MaxDepth"],
                *target,
            ],
        ),
        (
            "evaluate",
            [
                "--model-dir",
                str(w["model"]),
                "--test-dir",
                str(w["norm"] / "test"),
                "--output-dir",
                str(w["eval"]),
                *target,
            ],
        ),
        (
            "publish_model",
            [
                "--model-dir",
                str(w["model"]),
                "--evaluation-dir",
                str(w["eval"]),
                "--output-dir",
                str(w["pub"]),
            ],
        ),
    ]
    if processes:
        start = time.perf_counter()
        for name, argv in calls:
            subprocess.run(
                [python, str(SRC / f"{name}.py"), *argv], check=True, capture_output=True
            )
        return time.perf_counter() - start
    # One process on the same environment: imports outside the timing, the work inside.
    done = subprocess.run(
        [python, str(HERE / "one_process.py"), str(SRC), json.dumps(calls)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def step_environment() -> Environment:
    """The environment the app's steps run on (its scikit-learn 1.2-1 image's), built if need be."""
    settings = Settings.from_env(cwd=ROOT, environ=dict(os.environ))
    return StepEnvironments(settings).environment(IMAGE, print)


def pipeline(data_file: Path, home: Path) -> tuple[float, dict[str, int], str]:
    """One execution on a fresh store and history; wall time, peak RSS per step, status."""
    shutil.rmtree(home, ignore_errors=True)
    settings = Settings.from_env(
        cwd=ROOT, environ={"SAGEPIPE_HOME": str(home), "SAGEPIPE_BUCKET": "bench"}
    )
    engine = build_engine(settings)
    engine.store.ensure_bucket("bench")
    uri = "s3://bench/other/data/raw/bench.csv"
    engine.store.put_file(uri, data_file)
    spec = importlib.util.spec_from_file_location(
        "bench_app", ROOT / "app" / "sagemaker_pipeline.py"
    )
    assert spec and spec.loader
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    compiled = compile_pipeline(app.get_pipeline(bucket="bench"), bucket="bench")
    upload_code(compiled, engine.store)
    start = time.perf_counter()
    execution = start_definition(
        engine, compiled.definition, compiled.name, {**PARAMS, "InputDataUri": uri}
    )
    status = execution.wait()
    wall = time.perf_counter() - start
    rss = {
        s.name: int(s.metadata.get("_peak_rss_kb", 0))
        for s in History(settings.history_path).steps(execution.execution_id)
    }
    return wall, rss, status


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=float, default=1e6)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--big", type=float, default=0, help="also run the pipeline once at this many rows"
    )
    parser.add_argument("--big-only", action="store_true", help="only the --big run")
    args = parser.parse_args()
    if args.big_only:
        big_only(int(args.big))
        return
    rows = int(args.rows)
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        base = Path(tmp)
        data = base / "data"
        write(rows, data / "bench.csv")
        base_times, proc_times, pipe_times, rss_runs = [], [], [], []
        env = step_environment()
        python = str(env.python)
        for _ in range(args.runs):
            base_times.append(baseline(data, base / "work", python))
            proc_times.append(baseline(data, base / "work", python, processes=True))
            wall, rss, status = pipeline(data / "bench.csv", base / "home")
            if status != "Succeeded":
                raise SystemExit(f"pipeline {status}")
            pipe_times.append(wall)
            rss_runs.append(rss)
            print(
                f"baseline {base_times[-1]:.1f}s processes {proc_times[-1]:.1f}s pipeline {wall:.1f}s"
            )
        b, p = statistics.median(base_times), statistics.median(pipe_times)
        bp = statistics.median(proc_times)
        rss = {s: max(r.get(s, 0) for r in rss_runs) for s in STEPS}
        rows_table = [[s, f"{rss[s] / 1024:.0f}"] for s in STEPS]
        body = (
            f"{rows:,} synthetic rows (bench/generate_data.py, penguins schema), RandomForest "
            f"{PARAMS['NEstimators']} trees depth {PARAMS['MaxDepth']}; every side on the steps' "
            f"environment ({env.name}, Python {env.python_version}, pandas "
            f"{env.packages.get('pandas')}, scikit-learn {env.packages.get('scikit-learn')}); "
            f"median of {args.runs}.\n\n"
            + table(
                ["", "wall (s)", "sagepipe / this"],
                [
                    ["plain functions, one process (the work itself)", f"{b:.1f}", f"{p / b:.3f}"],
                    [
                        "the same scripts, one plain `python` process each",
                        f"{bp:.1f}",
                        f"{p / bp:.3f}",
                    ],
                    [
                        "sagepipe pipeline (sandboxed steps, store, history, logs)",
                        f"{p:.1f}",
                        "1.000",
                    ],
                ],
            )
            + "\n\nThe gap to the one-process baseline is Python start-up and imports (pandas and "
            "scikit-learn take about 1.1 s per process here), paid once per step because every "
            "step is its own process, as on SageMaker. sagepipe's own cost is the gap to the "
            "process-per-step baseline."
            + "\n\nPeak RSS per step (MiB, the step's process tree):\n\n"
            + table(["step", "peak RSS (MiB)"], rows_table)
            + "\n\nTarget: ratio to the one-process baseline <= 1.10."
        )
        if args.big:
            big_rows = int(args.big)
            write(big_rows, data / "big.csv")
            wall, big_rss, status = pipeline(data / "big.csv", base / "home-big")
            body += (
                f"\n\nAt {big_rows:,} rows, one run: {status} in {wall:.0f} s; largest step peak RSS "
                f"{max(big_rss.values()) / 1024 / 1024:.1f} GiB ("
                + ", ".join(f"{s} {big_rss.get(s, 0) / 1024 / 1024:.1f}" for s in STEPS)
                + " GiB)."
            )
    print(body)
    record(f"e2e: the example pipeline on {rows:,} rows", body)


def big_only(rows: int) -> None:
    """One pipeline run at ``rows`` rows: does it complete, and in how much memory per step."""
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        base = Path(tmp)
        start = time.perf_counter()
        write(rows, base / "data" / "big.csv")
        generated = time.perf_counter() - start
        wall, rss, status = pipeline(base / "data" / "big.csv", base / "home")
    total_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    body = (
        f"{rows:,} synthetic rows ({generated:.0f} s to generate), one run: **{status}** in "
        f"{wall:.0f} s on a machine with {total_gib:.0f} GiB of memory.\n\n"
        + table(
            ["step", "peak RSS (GiB)"], [[s, f"{rss.get(s, 0) / 1024 / 1024:.2f}"] for s in STEPS]
        )
    )
    print(body)
    record(f"e2e: the example pipeline on {rows:,} rows", body)


if __name__ == "__main__":
    main()
