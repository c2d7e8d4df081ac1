"""ImageUri -> ImageSpec: what stands for a SageMaker image locally.

``resolve(image_uri, user_map)`` is the one entry point. The user's mapping
(``[tool.sagepipe.images]`` in pyproject.toml, passed in by the caller) always wins over the
catalogue. Its keys are regular expressions searched in the ImageUri; its values are:

- ``"host"`` (or ``"{python}"``, the older spelling): the current interpreter; explicit, fast
  and unfaithful;
- any other string: a command standing for the image (``{python}`` in it is the host's);
- ``{ python = "3.10", requirements = "requirements.txt" }`` (``packages = [...]`` too): an
  environment built like a catalogued one;
- ``{ command = "..." }``: a command, as a string value.

Catalogued images match by repository and tag from any account and region
(``<acct>.dkr.ecr.<region>.amazonaws.com[.cn]/sagemaker-scikit-learn:1.2-1-cpu-py3``); the
tag's ``-cpu``/``-gpu``/``-py3NN`` suffixes are optional, and a ``-py3NN`` suffix sets the
Python of images built for several (the deep learning containers).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from sagepipe.errors import ConfigError
from sagepipe.images.catalogue import CatalogueEntry, load_catalogue
from sagepipe.records import record

KINDS = ("env", "host", "command")
HOST_VALUES = frozenset({"host", "{python}"})
SETTING = "[tool.sagepipe.images]"
# Tag parts after the version that do not change which image it is.
_SUFFIX_TOKEN = re.compile(r"^(cpu|gpu|py3\d*|cu\d+|ubuntu[\d.]+|sagemaker|amzn\d*)$")
_TAG_PYTHON = re.compile(r"-py3(\d{1,2})(?:-|$)")
_PYTHON = re.compile(r"^3\.\d{1,2}$")


@record
class ImageSpec:
    """What stands for an image locally.

    Attributes:
        image: the ImageUri as the definition names it.
        name: ``repository:version`` for catalogued images, the pattern for user entries.
        kind: ``env`` (an environment built by uv), ``host`` or ``command``.
        python: the image's Python minor version (``env`` only).
        packages: pins installed into the environment.
        requirements: a requirements file installed with them (user entries).
        command: the command standing for the image (``command`` only; ``{python}`` unexpanded).
        mode: how the image starts a job (script, algorithm, function).
        source: the build files the facts come from (empty for user entries).
        large: an environment of several GB, built only on demand.
        as_of: packages the pins leave open resolve as of this date (``YYYY-MM-DD``).
        user: the entry comes from the user's mapping.
        note: what the local environment does differently.
    """

    image: str
    name: str
    kind: str
    python: str | None = None
    packages: tuple[str, ...] = ()
    requirements: Path | None = None
    command: tuple[str, ...] = ()
    mode: str = "script"
    family: str = "custom"
    version: str = ""
    source: tuple[str, ...] = ()
    large: bool = False
    user: bool = False
    note: str = ""
    as_of: str | None = None


@record
class ImageRef:
    """An ImageUri taken apart: registry (may be empty), repository and tag (may be empty)."""

    registry: str
    repository: str
    tag: str


def parse_image_uri(image_uri: str) -> ImageRef:
    """Split ``[registry/]repository[:tag][@digest]``; the registry is the first part with a dot."""
    uri = image_uri.strip().split("@", 1)[0]
    registry, _, rest = uri.partition("/")
    if not rest or not ("." in registry or ":" in registry or registry == "localhost"):
        registry, rest = "", uri
    repository, _, tag = rest.rpartition(":") if ":" in rest else (rest, "", "")
    return ImageRef(registry, repository, tag)


def tag_python(tag: str) -> str | None:
    """The Python a ``-py3NN`` tag names (``2.8.0-cpu-py312`` -> ``3.12``), else None."""
    match = _TAG_PYTHON.search(tag)
    return f"3.{match.group(1)}" if match else None


def tag_matches(tag: str, version: str) -> bool:
    """Whether ``tag`` names ``version``: equal, or followed only by cpu/gpu/py3… parts."""
    if tag == version:
        return True
    if not tag.startswith(version + "-"):
        return False
    return all(_SUFFIX_TOKEN.match(part) for part in tag[len(version) + 1 :].split("-"))


def find_entry(
    ref: ImageRef, catalogue: tuple[CatalogueEntry, ...] | None = None
) -> CatalogueEntry | None:
    """The catalogue entry for ``ref``, matched by repository and tag; None when unknown."""
    repository = ref.repository.rsplit("/", 1)[-1]
    for entry in catalogue if catalogue is not None else load_catalogue():
        if entry.repository == repository and any(tag_matches(ref.tag, v) for v in entry.versions):
            return entry
    return None


def resolve(
    image_uri: str,
    user_map: Mapping[str, object] | None = None,
    *,
    project_root: Path | None = None,
    catalogue: tuple[CatalogueEntry, ...] | None = None,
) -> ImageSpec:
    """The spec standing for ``image_uri``: the user's mapping first, then the catalogue.

    Args:
        image_uri: the ImageUri/TrainingImage/AppSpecification image as the definition names it.
        user_map: ``[tool.sagepipe.images]`` (pattern -> value, see the module docstring).
        project_root: where relative ``requirements`` paths of user entries start.
        catalogue: entries to match (default: the packaged catalogue).

    Raises:
        ConfigError: for an image neither maps, naming it and the setting to add, or for a
            user entry that cannot work.
    """
    for pattern, value in (user_map or {}).items():
        try:
            found = re.search(pattern, image_uri)
        except re.error as exc:
            raise ConfigError(f"{SETTING} pattern {pattern!r} is not a regex: {exc}") from None
        if found:
            return _user_spec(image_uri, pattern, value, project_root or Path.cwd())
    ref = parse_image_uri(image_uri)
    entry = find_entry(ref, catalogue)
    if entry is None:
        raise ConfigError(_unknown(image_uri, ref, catalogue or load_catalogue()))
    python = tag_python(ref.tag) if entry.family in ("pytorch", "tensorflow") else None
    return ImageSpec(
        image=image_uri,
        name=entry.name,
        kind="env",
        python=python or entry.python,
        packages=entry.packages,
        mode=entry.mode,
        family=entry.family,
        version=entry.version,
        source=entry.source,
        large=entry.large,
        note=entry.note,
        as_of=entry.as_of,
    )


def _user_spec(image_uri: str, pattern: str, value: object, root: Path) -> ImageSpec:
    where = f"{SETTING} {pattern!r}"
    if isinstance(value, Mapping) and "command" in value:
        value = value["command"]
    if isinstance(value, str):
        if value.strip() in HOST_VALUES:
            return ImageSpec(image_uri, pattern, "host", user=True, note="the host interpreter")
        command = tuple(shlex.split(value))
        if not command:
            raise ConfigError(f'{where}: an empty command; use "host" or a command')
        return ImageSpec(image_uri, pattern, "command", command=command, user=True)
    if not isinstance(value, Mapping):
        raise ConfigError(
            f'{where}: use "host", a command, or {{ python = "3.10", requirements = "..." }}'
        )
    python = str(value.get("python", ""))
    if not _PYTHON.match(python):
        raise ConfigError(f'{where}: python = {python!r}; give a minor version like "3.10"')
    requirements = value.get("requirements")
    path = None
    if requirements is not None:
        path = Path(str(requirements))
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise ConfigError(f"{where}: requirements file {path} does not exist")
    packages = tuple(str(p) for p in value.get("packages", ()))
    return ImageSpec(
        image=image_uri,
        name=pattern,
        kind="env",
        python=python,
        packages=packages,
        requirements=path,
        mode=str(value.get("mode", "script")),
        user=True,
    )


def _unknown(image_uri: str, ref: ImageRef, catalogue: tuple[CatalogueEntry, ...]) -> str:
    repository = ref.repository.rsplit("/", 1)[-1] or image_uri
    known = [e.version for e in catalogue if e.repository == repository]
    versions = f" ({repository} has {', '.join(known)})" if known else ""
    return (
        f"image {image_uri!r} is not in the image catalogue{versions}; map it in pyproject.toml "
        f'under {SETTING}, e.g. "{repository.replace(".", "[.]")}" = '
        '{ python = "3.10", requirements = "requirements.txt" }, or = "host" for the current '
        "interpreter"
    )
