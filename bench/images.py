"""Image environments: building one from a warm package cache, and choosing a cached one.

build: the scikit-learn 1.2-1 environment (Python 3.9, 15 distributions, ~465 MB) built by
sagepipe with uv into an empty environment cache while uv's package cache is warm, median of
RUNS; the baseline, measured in the same run, is the same pins installed by `python -m venv`
+ `pip install` with pip's cache warm (one warm-up run first, then one timed run).
choose: `resolve(ImageUri) + choose_cached(spec)` per step, the engine's fast path, against
a bare `os.stat` of the environment's marker. Targets: build <= 15 s, choose <= 5 ms.

    python bench/images.py [--runs 3] [--no-pip]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import median_of, record, table
from sagepipe.images import (
    choose_cached,
    choose_interpreter,
    ensure_environment,
    find_interpreters,
    resolve,
)
from sagepipe.images.environments import MARKER

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def build_with_uv(runs: int, scratch: Path) -> tuple[float, Path]:
    spec = resolve(IMAGE, {})
    ensure_environment(spec, scratch / "warm")  # warms uv's package cache
    samples = []
    for i in range(runs):
        started = time.perf_counter()
        env = ensure_environment(spec, scratch / f"cache-{i}")
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), env.prefix


def build_with_pip(scratch: Path) -> float:
    spec = resolve(IMAGE, {})
    interpreter, _ = choose_interpreter(str(spec.python), find_interpreters())
    assert interpreter is not None

    def once(name: str) -> float:
        prefix = scratch / name
        started = time.perf_counter()
        subprocess.run([str(interpreter.path), "-m", "venv", str(prefix)], check=True)
        pip = [str(prefix / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "--only-binary", ":all:", *spec.packages], check=True)
        return time.perf_counter() - started

    once("pip-warm")
    return once("pip-timed")


def choose(prefix_cache: Path, runs: int) -> tuple[float, float]:
    def per_step() -> None:
        env = choose_cached(resolve(IMAGE, {}), prefix_cache)
        assert env is not None

    marker = next((prefix_cache / "envs").glob(f"*/{MARKER}"))
    repeat = 1000

    def many() -> None:
        for _ in range(repeat):
            per_step()

    ours, _ = median_of(many, runs)
    stat, _ = median_of(lambda: [os.stat(marker) for _ in range(repeat)], runs)
    return ours / repeat, stat / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-pip", action="store_true", help="skip the pip baseline")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-images-"))
    try:
        uv_s, prefix = build_with_uv(args.runs, scratch)
        pip_s = None if args.no_pip else build_with_pip(scratch)
        choose_s, stat_s = choose(prefix.parent.parent, 5)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows = [
        [
            "build scikit-learn 1.2-1 (sagepipe, uv)",
            f"{uv_s:.2f} s",
            f"{uv_s / pip_s:.2f}x" if pip_s else "",
            "<= 15 s",
        ],
    ]
    if pip_s:
        rows.append(["same pins, venv + pip install", f"{pip_s:.2f} s", "1.00x", ""])
    rows += [
        [
            "choose a cached environment (resolve + choose_cached)",
            f"{choose_s * 1e3:.3f} ms",
            f"{choose_s / stat_s:.1f}x a stat",
            "<= 5 ms",
        ],
        ["os.stat of the marker", f"{stat_s * 1e3:.4f} ms", "1.0x", ""],
    ]
    body = (
        f"Build: sagemaker-scikit-learn:1.2-1 (Python 3.9, pins from its requirements) into an "
        f"empty environment cache with uv's package cache warm, median of {args.runs}; the pip "
        "baseline installs the same pins into `python3.9 -m venv` with pip's cache warm (one "
        "warm-up, one timed run). Choose: per step, resolve the ImageUri and read the cached "
        "environment's marker; median of 5 x 1000 calls, against a bare `os.stat` of the marker."
        "\n\n" + table(["what", "time", "vs baseline", "target"], rows)
    )
    print(body)
    record("images: environment build and choice", body)


if __name__ == "__main__":
    main()
