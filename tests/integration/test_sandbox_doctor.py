"""``sagepipe doctor`` as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

EXE = str(Path(sys.executable).parent / "sagepipe")


def doctor(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEPIPE_"))}
    return subprocess.run(
        [EXE, "doctor", *args], cwd=project, capture_output=True, text=True, env=env, timeout=60
    )


def test_doctor_names_the_sandbox_and_its_guarantees(project: Path) -> None:
    done = doctor(project)
    assert done.returncode == 0, done.stderr
    expected = "bwrap" if shutil.which("bwrap") else "process"
    assert f"sandbox: {expected}" in done.stdout
    for guarantee in ("fresh root", "isolated network", "limits", "safe publishing"):
        assert guarantee in done.stdout


def test_doctor_says_the_process_sandbox_does_not_isolate(project: Path) -> None:
    done = doctor(project, "--sandbox", "process")
    assert done.returncode == 0, done.stderr
    assert "sandbox: process" in done.stdout
    fresh_root = next(line for line in done.stdout.splitlines() if "fresh root" in line)
    assert " no " in fresh_root
