"""Each step's image environment: ImageUri -> the environment the step runs on.

``StepEnvironments`` wraps the images layer for one engine: it resolves a step's image with the
user's ``[tool.sagepipe.images]`` first, picks the cached environment (one marker read, then a
dict lookup), and builds the missing ones in ``prepare`` before any step runs, with progress
and each approximation said once in one line.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sagepipe.config import Settings
from sagepipe.definition import Definition, StepDef
from sagepipe.images import (
    Environment,
    ImageSpec,
    choose_cached,
    derived_environment,
    ensure_environment,
    resolve,
)

Say = Callable[[str], None]
INSTALLING = "Installing dependencies from requirements.txt"  # the training toolkit's line
IMAGE_FIELDS = {
    "Processing": ("AppSpecification", "ImageUri"),
    "Training": ("AlgorithmSpecification", "TrainingImage"),
}


def step_image(step: StepDef, resolve_value: Callable[[Any], Any] | None = None) -> str | None:
    """The image a Processing/Training step names; None for other steps or an unresolved value.

    Args:
        step: the step.
        resolve_value: resolves a parameter expression (``{"Get": "Parameters.X"}``); without
            it only a plain string counts.
    """
    where = IMAGE_FIELDS.get(step.type)
    if where is None:
        return None
    spec = step.arguments.get(where[0])
    if not isinstance(spec, dict):
        return None
    value = spec.get(where[1])
    if not isinstance(value, str) and resolve_value is not None and value is not None:
        try:
            value = resolve_value(value)
        except Exception:  # a step reference: known only when the step runs
            return None
    return value if isinstance(value, str) and value else None


class StepEnvironments:
    """Image -> Environment for the steps of one engine; thread-safe, memoised."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache_dir = settings.cache_dir
        self._specs: dict[str, ImageSpec] = {}
        self._envs: dict[str, Environment] = {}
        self._noted: set[str] = set()
        self._lock = threading.Lock()

    def spec(self, image: str) -> ImageSpec:
        """The spec standing for ``image`` (user entries first); ConfigError when unknown."""
        found = self._specs.get(image)
        if found is None:
            s = self.settings
            found = resolve(image, s.images, project_root=s.project_root)
            self._specs[image] = found
        return found

    def cached(self, image: str) -> Environment | None:
        """The ready environment for ``image`` without building; None when it is not built."""
        env = self._envs.get(image)
        if env is not None:
            return env
        env = choose_cached(self.spec(image), self.cache_dir, host_python=self._host())
        if env is None or (env.kind == "env" and env.approximated and self.settings.images_strict):
            return None  # strict: ensure_environment builds it exactly or says why not
        self._envs[image] = env
        return env

    def environment(self, image: str, say: Say | None = None) -> Environment:
        """The environment for ``image``, built the first time (``say`` gets the progress)."""
        env = self.cached(image)
        if env is not None:
            return env
        with self._lock:  # one build at a time; the images layer locks across processes
            env = self._envs.get(image)
            if env is None:
                s = self.settings
                env = ensure_environment(
                    self.spec(image),
                    self.cache_dir,
                    offline=s.images_offline,
                    strict=s.images_strict,
                    allow_download=not s.images_offline,
                    host_python=self._host(),
                    progress=say,
                )
                self._envs[image] = env
        return env

    def prepare(self, images: Iterable[str], say: Say) -> list[Environment]:
        """Ensure every image's environment before a run; say each approximation once.

        Raises:
            ConfigError: an unknown image, or strict with a missing interpreter.
            EnvironmentBuildError: offline with packages missing, an uninstallable pin.
        """
        out = []
        for image in dict.fromkeys(images):
            env = self.environment(image, say)
            self.note(env, say)
            out.append(env)
        return out

    def note(self, env: Environment, say: Say) -> None:
        """Say once per environment what it does differently from the image."""
        if env.approximated is None or env.kind == "command":
            return
        with self._lock:
            if env.name in self._noted:
                return
            self._noted.add(env.name)
        if env.kind == "host":
            say(
                f"{env.name}: steps run on the host interpreter (Python {env.python_version}), "
                "not on the image's Python and packages"
            )
        else:
            say(f"approximated: {env.approximated}")

    def with_requirements(self, env: Environment, requirements: Path, log: Say) -> Environment:
        """``env`` plus a script-mode ``requirements.txt`` (cached by its hash)."""
        if env.kind != "env" or not requirements.is_file():
            return env
        said: list[str] = []

        def say(line: str) -> None:
            said.append(line)
            log(line)

        derived = derived_environment(
            env, requirements, self.cache_dir, offline=self.settings.images_offline, log=say
        )
        if not said:  # installed by an earlier run: the toolkit's line all the same
            log(f"{INSTALLING} (cached: {derived.name})")
        return derived

    def _host(self) -> Path | None:
        """The interpreter ``host`` means: ``SAGEPIPE_PYTHON``, None for this one."""
        python = self.settings.python
        return None if python == sys.executable else Path(python)


def describe(env: Environment) -> str:
    """One line naming the environment a step runs on (its log's first line)."""
    if env.kind == "command":
        return f"environment: {env.name} (a command: {' '.join(env.command)})"
    what = "the host interpreter" if env.kind == "host" else env.name
    exact = "" if env.exact or env.kind != "env" else ", approximated"
    return f"environment: {what} (Python {env.python_version}{exact})"


def definition_images(
    definition: Definition, resolve_value: Callable[[Any], Any] | None = None
) -> list[str]:
    """The images of every Processing/Training step of ``definition`` that are known now."""
    found = (step_image(step, resolve_value) for step in definition.all_steps())
    return [image for image in dict.fromkeys(found) if image is not None]
