"""Run test modules again as an ordinary user (CI runs as root): guarantees must hold for both."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNPRIVILEGED_UID = 1000


def rerun_as_ordinary_user(
    files: Sequence[str], extra_env: Mapping[str, str] | None = None, timeout: float = 280
) -> None:
    """Run ``files``' tests (all but the ``ordinary_user`` ones) as uid 1000; assert they pass.

    The rerun uses ``/usr/bin/python3`` of the same minor version with the project and this
    interpreter's site-packages on ``PYTHONPATH`` (an ordinary user cannot read root's pyenv).
    """
    if os.geteuid() != 0:
        pytest.skip("already an ordinary user")
    python = shutil.which("python3", path="/usr/bin:/bin")
    setpriv = shutil.which("setpriv")
    if python is None or setpriv is None:
        pytest.skip("needs /usr/bin/python3 and setpriv to run as another user")
    minor = subprocess.run(
        [python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    ).stdout.strip()
    if minor != str(sys.version_info[:2]):
        pytest.skip(f"{python} is not Python {sys.version_info[0]}.{sys.version_info[1]}")
    base = Path(tempfile.mkdtemp(prefix="sagepipe-unprivileged-", dir="/tmp"))
    os.chown(base, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(base),
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT), str(ROOT / "src"), sysconfig.get_paths()["purelib"]]
        ),
        "PYTHONDONTWRITEBYTECODE": "1",
        "TMPDIR": str(base),
        **(extra_env or {}),
    }
    cmd = [
        setpriv,
        f"--reuid={UNPRIVILEGED_UID}",
        f"--regid={UNPRIVILEGED_UID}",
        "--clear-groups",
        python,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--basetemp={base / 'pytest'}",
        *files,
        "-k",
        "not ordinary_user",
    ]
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    last = done.stdout.splitlines()[-1]
    assert " passed" in done.stdout and "failed" not in last and "error" not in last
