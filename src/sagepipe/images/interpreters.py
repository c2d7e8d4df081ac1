"""Find Python interpreters on this machine and pick the one for an image's Python.

Where they are looked for, in order: ``python3.N`` on the search path (default ``$PATH``),
pyenv versions (``$PYENV_ROOT/versions/*/bin`` and ``~/.pyenv``), and uv-managed Pythons
(``uv python list --only-installed``). ``choose_interpreter`` takes the exact minor version
when there is one, else the nearest (newer first at equal distance).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_VERSION = re.compile(r"^(3)\.(\d{1,2})(?:\.(\d+))?")
MINORS = range(6, 16)
_JSON = ("--output-format", "json")


@dataclass(frozen=True, order=True)
class Interpreter:
    """A Python found on the machine: version (major, minor, micro), path, how it was found.

    ``origin`` is ``path`` (micro unknown, 0), ``pyenv``, ``uv`` or ``base`` (a derived
    environment's base).
    """

    version: tuple[int, int, int]
    path: Path
    origin: str = "path"

    @property
    def minor(self) -> str:
        """``3.9``."""
        return f"{self.version[0]}.{self.version[1]}"

    @property
    def full(self) -> str:
        """``3.9.18`` (or ``3.9`` where only the name tells the version)."""
        return self.minor if self.origin == "path" else f"{self.minor}.{self.version[2]}"


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``3.9.18`` -> (3, 9, 18); ``3.9`` -> (3, 9, 0); anything else -> None."""
    match = _VERSION.match(text)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def find_interpreters(
    search_path: Sequence[Path] | None = None,
    pyenv_roots: Sequence[Path] | None = None,
    uv_bin: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[Interpreter]:
    """Every distinct Python 3 interpreter found, newest first.

    Args:
        search_path: folders holding ``python3.N`` (default: ``$PATH``); ``[]`` searches none.
        pyenv_roots: pyenv roots (default: ``$PYENV_ROOT`` and ``~/.pyenv``); ``[]`` for none.
        uv_bin: the uv executable to ask for uv-managed Pythons; None skips them.
        environ: the environment to read PATH/PYENV_ROOT/HOME from (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    if search_path is None:
        search_path = [Path(p) for p in env.get("PATH", "").split(os.pathsep) if p]
    if pyenv_roots is None:
        roots = [env.get("PYENV_ROOT", ""), str(Path(env.get("HOME", "~")).expanduser() / ".pyenv")]
        pyenv_roots = [Path(r) for r in roots if r]
    found: list[Interpreter] = [*_on_path(search_path), *_in_pyenv(pyenv_roots)]
    if uv_bin is not None:
        found.extend(_uv_managed(uv_bin))
    unique: dict[Path, Interpreter] = {}
    for interpreter in found:
        real = interpreter.path.resolve()
        known = unique.get(real)
        if known is None or interpreter.version > known.version:
            unique[real] = interpreter
    return sorted(unique.values(), reverse=True)


def choose_interpreter(
    want: str, interpreters: Iterable[Interpreter]
) -> tuple[Interpreter | None, bool]:
    """The interpreter for minor version ``want`` and whether it is exact.

    The newest patch release of that minor version when there is one; otherwise the nearest
    minor version, the newer at equal distance (new Pythons run more old code than the
    reverse); ``(None, False)`` when there is none at all.
    """
    target = parse_version(want)
    candidates = list(interpreters)
    if target is None or not candidates:
        return None, False
    exact = [i for i in candidates if i.version[:2] == target[:2]]
    if exact:
        return max(exact), True
    nearest = min(
        candidates, key=lambda i: (abs(i.version[1] - target[1]), -i.version[1], -i.version[2])
    )
    return nearest, False


def _on_path(folders: Sequence[Path]) -> Iterable[Interpreter]:
    for folder in folders:
        if folder.name == "shims":  # pyenv's shims fail for versions not selected
            continue
        for minor in MINORS:
            candidate = folder / f"python3.{minor}"
            if os.access(candidate, os.X_OK) and candidate.is_file():
                yield Interpreter((3, minor, 0), candidate, "path")


def _in_pyenv(roots: Sequence[Path]) -> Iterable[Interpreter]:
    for root in roots:
        versions = root / "versions"
        if not versions.is_dir():
            continue
        for folder in versions.iterdir():
            version = parse_version(folder.name)
            if version is None or not re.fullmatch(r"3\.\d+\.\d+", folder.name):
                continue
            candidate = folder / "bin" / f"python{version[0]}.{version[1]}"
            if os.access(candidate, os.X_OK):
                yield Interpreter(version, candidate, "pyenv")


def _uv_managed(uv_bin: str) -> Iterable[Interpreter]:
    try:
        out = subprocess.run(
            [uv_bin, "python", "list", "--only-installed", "--managed-python", *_JSON],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        rows = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return
    for row in rows:
        version = parse_version(str(row.get("version", "")))
        path = row.get("path")
        if version and path and str(row.get("implementation", "cpython")).lower() == "cpython":
            yield Interpreter(version, Path(path), "uv")
