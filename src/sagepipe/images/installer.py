"""uv, run as a subprocess: virtual environments, installs, and its failures as one line.

``run_uv`` runs the uv shipped with the ``uv`` package with Python downloads off (unless
asked) and no progress bars; ``explain`` turns uv's resolver report into one line with a
reason: ``offline`` (a package is missing from uv's cache), ``conflict`` (the requirements
contradict each other) or ``uninstallable`` (no release installs on this Python).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from sagepipe.errors import SagepipeError

Progress = Callable[[str], None]
_UNINSTALLABLE = ("wheels", "Python version", "no version", "not found", "ABI tag", "platform")
_MISSING = re.compile(r"Because (\S+?) (?:needs to be downloaded|was not found in the cache)")


class EnvironmentBuildError(SagepipeError):
    """An image environment could not be built (offline, conflicting or uninstallable pins).

    ``reason`` is ``offline``, ``conflict``, ``uninstallable`` or ``failed``.
    """

    def __init__(self, message: str, reason: str = "failed") -> None:
        super().__init__(message)
        self.reason = reason


def uv_bin() -> str:
    """The uv executable shipped with the ``uv`` package."""
    from uv import find_uv_bin

    return str(find_uv_bin())


def create_venv(prefix: Path, python: Path, offline: bool, say: Progress) -> None:
    """A relocatable venv seeded with pip (setuptools and wheel below 3.12), like an image's."""
    args = ["venv", "--seed", "--relocatable", "--quiet", "--python", str(python), str(prefix)]
    try:
        run_uv([*args, "--offline"] if offline else args, say)
    except EnvironmentBuildError as exc:
        raise explain(exc, offline, f"a Python {python} environment") from None


def pip_install(
    prefix: Path,
    packages: Sequence[str],
    *,
    offline: bool,
    only_binary: bool,
    say: Progress,
    options: Sequence[str] = (),
    name: str = "",
) -> None:
    args = ["pip", "install", "--python", str(prefix / "bin" / "python"), *options]
    if offline:
        args.append("--offline")
    if only_binary:
        args += ["--only-binary", ":all:"]
    try:
        run_uv([*args, *packages], say)
    except EnvironmentBuildError as exc:
        raise explain(exc, offline, name or "the image's pins") from None


def compile_bytecode(prefix: Path) -> None:
    """Compile the environment's packages to ``.pyc`` with its own Python, once.

    A step's environment is mounted read-only, so without ``.pyc`` files every step would
    compile pandas and scikit-learn again on import (seconds each). The environment's own
    ``compileall`` works on every catalogued Python (uv's ``--compile-bytecode`` does not run
    on 3.6); a file its Python cannot compile is left as it is, as pip leaves it.
    """
    folders = [str(p) for p in prefix.glob("lib/python3*/site-packages")]
    if folders:
        subprocess.run(
            [str(prefix / "bin" / "python"), "-m", "compileall", "-q", "-j", "0", *folders],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )


def explain(exc: EnvironmentBuildError, offline: bool, what: str) -> EnvironmentBuildError:
    """One line for uv's failure: offline and missing, conflicting, or not installable."""
    text = str(exc)
    cause = " ".join(
        line.split("cause:", 1)[1].strip() if "cause:" in line else line.strip()
        for line in text.splitlines()
        if line.strip().startswith(("cause:", "Because", "And because", "and ")) or "╰─▶" in line
    ).replace("╰─▶", "")
    cause = re.sub(r"\s+", " ", cause).strip() or text.splitlines()[-1].strip()
    if offline and ("network was disabled" in text or "Network connectivity" in text):
        missing = sorted(set(_MISSING.findall(text)))
        names = ", ".join(missing) if missing else cause
        return EnvironmentBuildError(
            f"offline, and the package cache lacks {names}; run `sagepipe images build` "
            "with network access to prepare it",
            reason="offline",
        )
    if "unsatisfiable" in cause and not any(m in cause for m in _UNINSTALLABLE):
        return EnvironmentBuildError(f"{what} conflict: {cause}", reason="conflict")
    return EnvironmentBuildError(f"{what} do not install: {cause}", reason="uninstallable")


def run_uv(args: Sequence[str], say: Progress, *, downloads: bool = False) -> None:
    env = dict(os.environ)
    env["UV_PYTHON_DOWNLOADS"] = "automatic" if downloads else "never"
    env["UV_NO_PROGRESS"] = "1"
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        [uv_bin(), *args], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise EnvironmentBuildError(done.stderr.strip() or f"uv exited {done.returncode}")
    for line in done.stderr.splitlines():
        if line.strip() and not line.startswith(("Using ", "warning: Failed to inspect")):
            say(line.rstrip())


def freeze(prefix: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    out = subprocess.run(
        [uv_bin(), "pip", "freeze", "--python", str(prefix / "bin" / "python")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    pairs = (line.split("==", 1) for line in out.splitlines() if "==" in line)
    return {normalise(name): version.strip() for name, version in pairs}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.split("[", 1)[0]).lower()
