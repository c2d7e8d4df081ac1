"""Image environments: virtual environments built by uv, once per spec, in the user cache.

The engine's calls, in order::

    spec = resolve(image_uri, settings.images)                     # sagepipe.images.match
    env = choose_cached(spec, cache_dir) or ensure_environment(spec, cache_dir, ...)
    env = derived_environment(env, source_dir / "requirements.txt", cache_dir, log=...)
    argv = env.argv(["python", "train.py"])                        # the image's interpreter

Layout: ``<cache_dir>/envs/<key>/`` where ``key`` hashes the spec (Python minor version, pins,
requirements content); ``<cache_dir>`` is ``$SAGEPIPE_CACHE_DIR``, else
``$XDG_CACHE_HOME/sagepipe``, else ``~/.cache/sagepipe`` (``default_cache_dir``). An
environment is complete when its marker ``sagepipe-env.json`` exists: a build runs under
``envs/<key>.lock`` (``flock``) in ``envs/.build-<key>-<pid>`` and is renamed into place with
the marker already written, so a killed build leaves only a temporary folder that the next
build of that key removes. uv's own package cache makes a rebuild take seconds.

Where no interpreter of the image's minor version exists, the nearest one is used; if the
image's pins do not install on it, each ``==`` pin is relaxed to the nearest release that
does (``>=`` with uv's lowest-direct resolution on a newer Python, ``<=`` on an older one),
and ``Environment.approximated`` says so in one line naming both Pythons. ``strict=True``
turns that into a ``ConfigError``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import field, replace
from pathlib import Path
from typing import overload

from sagepipe.errors import ConfigError
from sagepipe.images.installer import (
    EnvironmentBuildError,
    Progress,
    compile_bytecode,
    create_venv,
    freeze,
    normalise,
    pip_install,
    run_uv,
    uv_bin,
)
from sagepipe.images.interpreters import Interpreter, choose_interpreter, find_interpreters
from sagepipe.images.match import ImageSpec
from sagepipe.records import record

LAYOUT = 3  # part of every key: bump when an environment's layout changes
MARKER = "sagepipe-env.json"
PYTHON_NAMES = frozenset({"python", "python3"})
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._\-]*(?:\[[^\]]*\])?)==([0-9][A-Za-z0-9.+!]*)$")


@record
class Environment:
    """A ready environment (or the host interpreter, or a command) standing for an image.

    Attributes:
        name: the image name (``sagemaker-scikit-learn:1.2-1``) or the user pattern.
        kind: ``env``, ``host`` or ``command``.
        python: the environment's interpreter (``<prefix>/bin/python``), or the host's.
        prefix: the environment folder (``sys.prefix`` of ``python``).
        python_version: the interpreter's version (``3.9.18``).
        key: the spec hash naming the folder (empty for host and command).
        approximated: one line saying what differs from the image, None when exact.
        size: bytes under ``prefix`` (0 for host and command).
        packages: installed distributions, normalised name -> version.
        command: the command standing for the image (``command`` kind).
    """

    name: str
    kind: str
    python: Path
    prefix: Path
    python_version: str
    key: str = ""
    approximated: str | None = None
    size: int = 0
    packages: Mapping[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ()

    @property
    def exact(self) -> bool:
        """The environment has the image's Python and pins."""
        return self.approximated is None and self.kind == "env"

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` with a leading ``python``/``python3`` run on this environment.

        For a ``command`` environment the command replaces that leading interpreter (its
        ``{python}`` is the host's); other argv run unchanged.
        """
        args = list(argv)
        if not args or args[0].rsplit("/", 1)[-1] not in PYTHON_NAMES:
            return args
        if self.kind == "command":
            return [str(self.python) if p == "{python}" else p for p in self.command] + args[1:]
        return [str(self.python), *args[1:]]


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$SAGEPIPE_CACHE_DIR``, else ``$XDG_CACHE_HOME/sagepipe``, else ``~/.cache/sagepipe``."""
    env = os.environ if environ is None else environ
    if env.get("SAGEPIPE_CACHE_DIR"):
        return Path(env["SAGEPIPE_CACHE_DIR"]).expanduser()
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]).expanduser() / "sagepipe"
    return Path(env.get("HOME", "~")).expanduser() / ".cache" / "sagepipe"


def spec_key(spec: ImageSpec) -> str:
    """The hash naming ``spec``'s environment: Python, pins, requirements content, layout."""
    requirements = spec.requirements.read_bytes() if spec.requirements is not None else b""
    payload = {
        "layout": LAYOUT,
        "python": spec.python,
        "packages": list(spec.packages),
        "requirements": hashlib.sha256(requirements).hexdigest() if requirements else None,
        "only_binary": _only_binary(spec),
        "as_of": spec.as_of,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def choose_cached(
    spec: ImageSpec, cache_dir: Path, *, host_python: Path | None = None
) -> Environment | None:
    """The environment for ``spec`` if it is ready (one marker read), else None.

    Host and command specs are always ready.
    """
    if spec.kind != "env":
        return _trivial(spec, host_python)
    return _named(read_environment(cache_dir / "envs" / spec_key(spec)), spec)


def read_environment(prefix: Path) -> Environment | None:
    """The environment whose marker is in ``prefix``; None when there is none (or unreadable)."""
    try:
        marker = json.loads((prefix / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return Environment(
        name=str(marker["name"]),
        kind="env",
        python=prefix / "bin" / "python",
        prefix=prefix,
        python_version=str(marker["python_version"]),
        key=prefix.name,
        approximated=marker.get("approximated"),
        size=int(marker.get("size", 0)),
        packages=dict(marker.get("packages", {})),
    )


def list_environments(cache_dir: Path) -> list[Environment]:
    """Every complete environment in the cache, by name."""
    folder = cache_dir / "envs"
    if not folder.is_dir():
        return []
    found = (read_environment(p) for p in folder.iterdir() if not p.name.startswith("."))
    return sorted((e for e in found if e is not None), key=lambda e: e.name)


def ensure_environment(
    spec: ImageSpec,
    cache_dir: Path,
    *,
    interpreters: Sequence[Interpreter] | None = None,
    offline: bool = False,
    strict: bool = False,
    allow_download: bool = False,
    rebuild: bool = False,
    host_python: Path | None = None,
    progress: Progress | None = None,
) -> Environment:
    """The environment for ``spec``, built into ``cache_dir`` the first time.

    Args:
        spec: from ``resolve``.
        cache_dir: the user cache (``default_cache_dir()``); environments go in ``envs/``.
        interpreters: Pythons to choose from (default: ``find_interpreters``, uv-managed too).
        offline: install only from uv's cache (``uv pip install --offline``).
        strict: a missing interpreter of the image's Python is an error, not an approximation.
        allow_download: uv may fetch a missing Python (never when offline).
        rebuild: build again even when a cached environment exists.
        host_python: the interpreter ``host`` and ``{python}`` mean (default: this one).
        progress: called with one line per stage (building, waiting, installing).

    Raises:
        ConfigError: strict and no interpreter of the image's Python.
        EnvironmentBuildError: offline with packages missing from the cache, conflicting
            requirements, or pins that install on no interpreter found.
    """
    if spec.kind != "env":
        return _trivial(spec, host_python)
    say = progress or (lambda _line: None)
    key = spec_key(spec)
    prefix = cache_dir / "envs" / key
    if not rebuild:
        ready = read_environment(prefix)
        if ready is not None and not (strict and ready.approximated):
            return _named(ready, spec)
    with _build_lock(prefix, say):
        ready = None if rebuild else read_environment(prefix)
        if ready is not None and not (strict and ready.approximated):
            return _named(ready, spec)
        interpreter, exact = _interpreter(spec, interpreters, offline, allow_download, say)
        if not exact and strict:
            raise ConfigError(
                f"{spec.name} needs Python {spec.python} and none is installed "
                f"(nearest: {interpreter.full}) and strict is on; install Python {spec.python} "
                f"(`pyenv install {spec.python}` or `uv python install {spec.python}`)"
            )

        def build(tmp: Path) -> dict[str, object]:
            say(f"building {spec.name}: Python {interpreter.full}, {len(spec.packages)} packages")
            relaxed = _install_spec(spec, tmp, interpreter, exact, offline, say)
            note = None
            if not exact:
                note = (
                    f"{spec.name} wants Python {spec.python}; none here, so Python "
                    f"{interpreter.full} runs it"
                )
                if relaxed:
                    note += " with the nearest pins that install: " + relaxed
            return {"name": spec.name, "python_version": _version_of(tmp), "approximated": note}

        return _named(_publish(prefix, build, interpreter), spec)


def derived_environment(
    base: Environment,
    requirements: Path,
    cache_dir: Path,
    *,
    offline: bool = False,
    log: Progress | None = None,
) -> Environment:
    """``base`` plus ``requirements``, installed the way SageMaker's toolkits do it.

    The toolkit runs ``pip install -r requirements.txt`` in the image, before the user's
    script; here that install goes into an environment derived from ``base`` and cached by the
    hash of (base, requirements content), so it runs once per change. ``log`` receives the
    toolkit's line (``Installing dependencies from requirements.txt``) and the installer's
    output, for the step's log. Call it before the step's network isolation.

    Raises:
        EnvironmentBuildError: offline with packages missing, or a conflicting requirements file.
    """
    if base.kind != "env" or not requirements.is_file():
        return base
    say = log or (lambda _line: None)
    digest = hashlib.sha256(base.key.encode() + b"\0" + requirements.read_bytes()).hexdigest()
    prefix = cache_dir / "envs" / digest[:24]
    ready = read_environment(prefix)
    if ready is not None:
        return ready
    with _build_lock(prefix, say):
        ready = read_environment(prefix)
        if ready is not None:
            return ready
        interpreter = Interpreter(_version_tuple(base.python_version), base.python, "base")

        def build(tmp: Path) -> dict[str, object]:
            create_venv(tmp, base.python, offline, say)
            pins = [f"{name}=={version}" for name, version in sorted(base.packages.items())]
            if pins:
                pip_install(tmp, pins, offline=offline, only_binary=False, say=lambda _l: None)
            say("Installing dependencies from requirements.txt")
            pip_install(
                tmp,
                ["-r", str(requirements)],
                offline=offline,
                only_binary=False,
                say=say,
                name=f"requirements file {requirements}",
            )
            return {
                "name": f"{base.name}+{requirements.parent.name}/{requirements.name}",
                "python_version": base.python_version,
                "approximated": base.approximated,
            }

        return _publish(prefix, build, interpreter)


@overload
def _named(env: Environment, spec: ImageSpec) -> Environment: ...
@overload
def _named(env: None, spec: ImageSpec) -> None: ...
def _named(env: Environment | None, spec: ImageSpec) -> Environment | None:
    """``env`` under the spec's name (images with the same pins share one environment)."""
    return env if env is None or env.name == spec.name else replace(env, name=spec.name)


def _trivial(spec: ImageSpec, host_python: Path | None) -> Environment:
    python = host_python or Path(sys.executable)
    version = ".".join(str(p) for p in sys.version_info[:3]) if host_python is None else ""
    note = "the host interpreter, not the image's" if spec.kind == "host" else "a command"
    return Environment(
        name=spec.name,
        kind=spec.kind,
        python=python,
        prefix=Path(sys.prefix) if host_python is None else python.parent.parent,
        python_version=version,
        approximated=note,
        command=spec.command,
    )


def _only_binary(spec: ImageSpec) -> bool:
    # Catalogued pins install from wheels (fast, no compiler); a user's file may need sdists.
    return not spec.user


def _interpreter(
    spec: ImageSpec,
    interpreters: Sequence[Interpreter] | None,
    offline: bool,
    allow_download: bool,
    say: Progress,
) -> tuple[Interpreter, bool]:
    want = str(spec.python)
    found = list(interpreters) if interpreters is not None else find_interpreters(uv_bin=uv_bin())
    chosen, exact = choose_interpreter(want, found)
    if not exact and allow_download and not offline and interpreters is None:
        say(f"fetching Python {want} with uv")
        try:
            run_uv(["python", "install", want], say, downloads=True)
            chosen, exact = choose_interpreter(want, find_interpreters(uv_bin=uv_bin()))
        except EnvironmentBuildError as exc:  # no such download, or no network: the nearest
            say(f"could not fetch Python {want}: {exc}")
    if chosen is None:
        raise ConfigError(
            f"{spec.name} needs Python {want} and no Python interpreter was found; install "
            f"Python {want} (pyenv or `uv python install {want}`)"
        )
    return chosen, exact


def _install_spec(
    spec: ImageSpec,
    tmp: Path,
    interpreter: Interpreter,
    exact: bool,
    offline: bool,
    say: Progress,
) -> str:
    """Create the venv and install the pins; the relaxed pins as text ('' when none)."""
    create_venv(tmp, interpreter.path, offline, say)
    extra = ["-r", str(spec.requirements)] if spec.requirements is not None else []
    packages = [*spec.packages, *extra]
    if not packages:
        return ""
    only_binary = _only_binary(spec)
    as_of = ["--exclude-newer", f"{spec.as_of}T23:59:59Z"] if spec.as_of else []
    try:
        pip_install(tmp, packages, offline=offline, only_binary=only_binary, say=say, options=as_of)
        return ""
    except EnvironmentBuildError as exc:
        if exact or exc.reason != "uninstallable":
            raise
    newer = interpreter.version[:2] > tuple(int(p) for p in str(spec.python).split("."))
    pinned = {m.group(1): m.group(2) for p in spec.packages if (m := _PIN.match(p))}
    relaxed = [_relax(p, newer) for p in spec.packages if _PIN.match(p)]
    say(f"the image's pins do not install on Python {interpreter.full}; using the nearest ones")
    # On a newer Python the nearest releases may postdate the image, so as_of does not apply.
    resolution = ["--resolution", "lowest-direct"] if newer else as_of
    pip_install(
        tmp,
        [*relaxed, *extra],
        offline=offline,
        only_binary=only_binary,
        say=say,
        options=resolution,
    )
    rest = [p for p in spec.packages if not _PIN.match(p)]
    if rest:
        pip_install(
            tmp, rest, offline=offline, only_binary=only_binary, say=say, options=resolution[2:]
        )
    installed = freeze(tmp)
    changes = [
        f"{name} {version} -> {installed.get(normalise(name), '?')}"
        for name, version in pinned.items()
        if installed.get(normalise(name)) != version
    ]
    return ", ".join(changes) or "all pins kept"


def _relax(pin: str, newer: bool) -> str:
    match = _PIN.match(pin)
    assert match is not None
    return f"{match.group(1)}{'>=' if newer else '<='}{match.group(2)}"


def _version_of(prefix: Path) -> str:
    for line in (prefix / "pyvenv.cfg").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("version_info", "version"):
            return value.strip()
    return ""


def _version_tuple(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in re.findall(r"\d+", text)[:3]] + [0, 0, 0]
    return parts[0], parts[1], parts[2]


def _size(prefix: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(prefix):
        for file in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, file)).st_size
    return total


@contextlib.contextmanager
def _build_lock(prefix: Path, say: Progress) -> Iterator[None]:
    """Hold ``<prefix>.lock``; another process building the same key is waited for."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with open(prefix.with_name(prefix.name + ".lock"), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another build of {prefix.name}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _publish(
    prefix: Path,
    build: Callable[[Path], dict[str, object]],
    interpreter: Interpreter,
) -> Environment:
    """Build into a temporary folder, write the marker, rename into place (lock held)."""
    for stale in prefix.parent.glob(f".build-{prefix.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = prefix.with_name(f".build-{prefix.name}-{os.getpid()}")
    try:
        marker = build(tmp)
        compile_bytecode(tmp)
        marker.update(
            interpreter=str(interpreter.path),
            packages=freeze(tmp),
            size=_size(tmp),
            built=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        (tmp / MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True))
        if prefix.exists():
            old = prefix.with_name(f".build-{prefix.name}-old-{os.getpid()}")
            os.rename(prefix, old)
            shutil.rmtree(old, ignore_errors=True)
        os.rename(tmp, prefix)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ready = read_environment(prefix)
    assert ready is not None
    return ready
