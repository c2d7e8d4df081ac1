"""Start-up: `sagepipe --help` and a fully cached rerun of the example, against a bare
interpreter start measured in the same run.

The example app is copied into a fresh project, its data seeded and run once (every later
run is then a cache hit for every cached step); then the commands below take turns, RUNS
times each, and the median of each is compared with `python -c pass` on the same
interpreter. Targets: cached rerun <= 15x, `--help` <= 8x.

    python bench/startup.py [--runs 15]
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
from bench._common import record, table

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SAGEPIPE = str(Path(sys.executable).parent / "sagepipe")
TARGETS = {"sagepipe --help": 8.0, "sagepipe run (every step cached)": 15.0}


def project(scratch: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the example app with its data seeded and one run done (fills the cache)."""
    root = scratch / "proj"
    shutil.copytree(ROOT / "app", root / "app", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "pyproject.toml").write_text('[tool.sagepipe]\nbucket = "sagepipe-local"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEPIPE_"))}
    data = "s3://sagepipe-local/other/data/raw/penguins.csv"
    seed = [SAGEPIPE, "bucket", "put", str(ROOT / "data" / "penguins.csv"), data]
    subprocess.run(seed, cwd=root, env=env, check=True, capture_output=True)
    first = subprocess.run([SAGEPIPE, "run", "-q"], cwd=root, env=env, capture_output=True)
    if first.returncode != 0:
        sys.exit(f"the first run failed:\n{first.stderr.decode()[-2000:]}")
    return root, env


def measure(
    commands: dict[str, list[str]], cwd: Path, env: dict[str, str], runs: int
) -> dict[str, float]:
    """Median wall seconds of each command, the commands taking turns run by run."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():  # one warm-up each: the page cache, .pyc files
        subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)
    for _ in range(runs):
        for name, argv in commands.items():
            started = time.perf_counter()
            subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sagepipe-bench-startup-") as tmp:
        root, env = project(Path(tmp))
        commands = {
            "python -c pass": [PYTHON, "-c", "pass"],
            "python -c 'import sagepipe.cli.main'": [PYTHON, "-c", "import sagepipe.cli.main"],
            "sagepipe --help": [SAGEPIPE, "--help"],
            "sagepipe run (every step cached)": [SAGEPIPE, "run", "-q"],
        }
        medians = measure(commands, root, env, args.runs)
    bare = medians["python -c pass"]
    rows = []
    for name, seconds in medians.items():
        target = TARGETS.get(name)
        ratio = seconds / bare
        verdict = "" if target is None else ("met" if ratio <= target else "missed")
        rows.append(
            [
                name,
                f"{seconds * 1000:.1f}",
                f"{ratio:.1f}x",
                "" if target is None else f"<= {target:.0f}x",
                verdict,
            ]
        )
    body = table(["command", "median (ms)", "vs python -c pass", "target", ""], rows)
    load = os.getloadavg()[0]
    note = (
        f"Median of {args.runs} runs each, the commands taking turns, after one warm-up; the "
        f"example app in a fresh project, run once before (every cached step then hits); "
        f"`python -c pass` on the same interpreter is the baseline. Load average at the end: "
        f"{load:.1f}."
    )
    print(body)
    print(note)
    record("startup: --help and a fully cached rerun", f"{note}\n\n{body}")


if __name__ == "__main__":
    main()
