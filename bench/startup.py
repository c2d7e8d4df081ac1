"""Start-up: `sagepipe --help` and a fully cached rerun of the example, against a bare
interpreter start measured in the same run.

The example app is copied into a fresh project, its data seeded and run once (every later
run is then a cache hit for every cached step); then the commands below take turns, RUNS
times each, and the median of each is compared with `python -c pass` on the same
interpreter. Targets: cached rerun <= 15x, `--help` <= 8x.

    python bench/startup.py [--runs 15] [--baseline DIR]

``--baseline DIR`` (a ``src`` folder of another revision, e.g. from ``git archive REV src app``)
adds the same two commands run on that code, in the same turns, in a project of its own (with
that revision's example app when an ``app`` folder sits beside DIR).
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
TARGETS = {"sagepipe --help": 8.0, "sagepipe run (every step cached)": 15.0}


def project(scratch: Path, src: Path | None = None) -> tuple[Path, dict[str, str]]:
    """A copy of the example app with its data seeded and one run done (fills the cache), by
    this checkout's code or by the code under ``src``."""
    root = scratch / ("proj" if src is None else "baseline")
    app = ROOT / "app"
    if src is not None and (src.parent / "app").is_dir():  # the example as that revision had it
        app = src.parent / "app"
    shutil.copytree(app, root / "app", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "pyproject.toml").write_text('[tool.sagepipe]\nbucket = "sagepipe-local"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEPIPE_"))}
    # An installed package has its bytecode cached; with this set every run compiles sagepipe's
    # modules from source again (about a third of a cached rerun's time here).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    data = "s3://sagepipe-local/other/data/raw/penguins.csv"
    seed = sagepipe(src, "bucket", "put", str(ROOT / "data" / "penguins.csv"), data)
    subprocess.run(seed, cwd=root, env=env, check=True, capture_output=True)
    first = subprocess.run(sagepipe(src, "run", "-q"), cwd=root, env=env, capture_output=True)
    if first.returncode != 0:
        sys.exit(f"the first run failed:\n{first.stderr.decode()[-2000:]}")
    return root, env


def once(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the process and its children) of one run."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def measure(
    commands: dict[str, tuple[list[str], Path]], env: dict[str, str], runs: int
) -> dict[str, tuple[float, float]]:
    """Median wall and CPU seconds of each command (run in its folder), the commands taking
    turns run by run."""
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    for argv, cwd in commands.values():  # one warm-up each: the page cache, .pyc files
        once(argv, cwd, env)
    for _ in range(runs):
        for name, (argv, cwd) in commands.items():
            wall, cpu = once(argv, cwd, env)
            walls[name].append(wall)
            cpus[name].append(cpu)
    return {n: (statistics.median(walls[n]), statistics.median(cpus[n])) for n in commands}


def sagepipe(src: Path | None, *args: str) -> list[str]:
    """``sagepipe ARGS`` on this checkout's code, or on the code under ``src``."""
    path = "" if src is None else f"sys.path.insert(0, {str(src)!r}); "
    code = f"import sys; {path}from sagepipe.cli.main import entry; entry()"
    return [PYTHON, "-c", code, *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--baseline", type=Path, help="a src folder of another revision")
    parser.add_argument("--baseline-name", help="how the table names the baseline revision")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sagepipe-bench-startup-") as tmp:
        root, env = project(Path(tmp))
        commands = {
            "python -c pass": ([PYTHON, "-c", "pass"], root),
            "python -c 'import sagepipe.cli.main'": (
                [PYTHON, "-c", "import sagepipe.cli.main"],
                root,
            ),
            "sagepipe --help": (sagepipe(None, "--help"), root),
            "sagepipe run (every step cached)": (sagepipe(None, "run", "-q"), root),
        }
        if args.baseline is not None:  # in a project of its own: histories are not shared
            base = args.baseline.resolve()
            other, _ = project(Path(tmp), base)
            commands["baseline: sagepipe --help"] = (sagepipe(base, "--help"), other)
            commands["baseline: sagepipe run (every step cached)"] = (
                sagepipe(base, "run", "-q"),
                other,
            )
        medians = measure(commands, env, args.runs)
    bare_wall, bare_cpu = medians["python -c pass"]
    rows = []
    for name, (wall, cpu) in medians.items():
        target = TARGETS.get(name)
        ratio, cpu_ratio = wall / bare_wall, cpu / bare_cpu
        verdict = "" if target is None else ("met" if ratio <= target else "missed")
        rows.append(
            [
                name,
                f"{wall * 1000:.1f}",
                f"{ratio:.1f}x",
                f"{cpu * 1000:.0f}",
                f"{cpu_ratio:.1f}x",
                "" if target is None else f"<= {target:.0f}x",
                verdict,
            ]
        )
    headers = ["command", "wall (ms)", "wall vs bare", "CPU (ms)", "CPU vs bare", "target", ""]
    body = table(headers, rows)
    load = os.getloadavg()[0]
    note = (
        f"Median of {args.runs} runs each, the commands taking turns, after one warm-up; the "
        f"example app in a fresh project, run once before (every cached step then hits); "
        f"`python -c pass` on the same interpreter is the baseline (bare). CPU is user + "
        f"system time of the process and its children, which a busy machine inflates less "
        f"than wall time; the targets are on wall time. Load average at the end: {load:.1f}."
    )
    if args.baseline is not None:
        note += f" Baseline: {args.baseline_name or args.baseline}, in the same turns."
    print(body)
    print(note)
    record("startup: --help and a fully cached rerun", f"{note}\n\n{body}")


if __name__ == "__main__":
    main()
