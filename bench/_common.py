"""Shared helpers for the benchmarks: timing, machine description, RESULTS.md sections."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_of(fn: Callable[[], object], runs: int) -> tuple[float, list[float]]:
    """Median wall time over ``runs`` calls, and every sample."""
    samples = [timed(fn) for _ in range(runs)]
    return statistics.median(samples), samples


def bare_start(argv: list[str], runs: int = 20) -> float:
    """Median wall time of starting ``argv`` as a process."""
    return median_of(lambda: subprocess.run(argv, check=True), runs)[0]


def machine() -> str:
    """One line describing this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"


NOTES = "### Notes"


def record(section: str, body: str) -> None:
    """Replace (or add) ``## section`` in bench/RESULTS.md with ``body``, dated. A ``### Notes``
    part of the old section (written by hand: spreads, causes, comparisons) is kept after it."""
    text = (
        RESULTS.read_text()
        if RESULTS.exists()
        else "# Benchmark results\n\nEach section is rewritten by the script named in it.\n"
    )
    block = f"## {section}\n\n_{date.today().isoformat()} — {machine()}_\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    old = pattern.search(text)
    if old is not None and f"\n{NOTES}\n" in old.group(0):
        block += f"\n{NOTES}\n" + old.group(0).split(f"\n{NOTES}\n", 1)[1].rstrip() + "\n"
    text = (
        pattern.sub(lambda _: block + "\n", text)
        if old is not None
        else text.rstrip() + "\n\n" + block
    )
    RESULTS.write_text(text)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)
