"""Map a step's ImageUri to a local runtime (an interpreter or a command)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from sagepipe.errors import ConfigError

PYTHON = "{python}"
# SageMaker framework images whose containers run Python scripts.
DEFAULT_IMAGES: dict[str, str] = {
    r"sagemaker-scikit-learn": PYTHON,
    r"sagemaker-xgboost": PYTHON,
    r"pytorch-(training|inference)": PYTHON,
    r"sagemaker-pytorch": PYTHON,
    r"tensorflow-(training|inference)": PYTHON,
    r"huggingface-pytorch": PYTHON,
}
PYTHON_NAMES = frozenset({"python", "python3"})


class ImageMap:
    """Resolve ImageUri to a local command; user entries (``[tool.sagepipe.images]``) win."""

    def __init__(self, python: str, user: Mapping[str, object] | None = None) -> None:
        self.python = python
        commands = {k: v for k, v in (user or {}).items() if isinstance(v, str)}
        self.rules = [(re.compile(k), v) for k, v in {**commands, **DEFAULT_IMAGES}.items()]
        self.user = commands

    def runtime(self, image: str) -> list[str]:
        """The local command standing for ``image``; ConfigError naming the setting when unknown."""
        for pattern, value in self.rules:
            if pattern.search(image):
                return [self.python if part == PYTHON else part for part in shlex.split(value)]
        raise ConfigError(
            f"image {image!r} has no local runtime; map it in pyproject.toml under "
            f'[tool.sagepipe.images], e.g. \'"{_suggest(image)}" = "{{python}}"\' for a Python '
            "image or a command that stands for the image"
        )

    def entrypoint(self, image: str, argv: list[str]) -> list[str]:
        """``argv`` with a leading python/python3 replaced by the image's runtime."""
        if argv and argv[0].rsplit("/", 1)[-1] in PYTHON_NAMES:
            return [*self.runtime(image), *argv[1:]]
        self.runtime(image)
        return list(argv)


def _suggest(image: str) -> str:
    name = image.rsplit("/", 1)[-1].split(":", 1)[0]
    return re.escape(name)
