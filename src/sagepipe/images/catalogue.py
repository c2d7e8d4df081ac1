"""The catalogue of SageMaker images: data shipped in the package (``catalogue.toml``).

Each entry names an ECR repository and a version (plus aliases), the image's Python minor
version, the pins from the image's public build files that a step can import, and the URLs of
those build files at the commit they were read. ``load_catalogue()`` parses the file once per
process; nothing is read at import time.
"""

from __future__ import annotations

import functools
import pkgutil
import tomllib
from typing import Any

from sagepipe.errors import ConfigError
from sagepipe.records import record

MODES = ("script", "algorithm", "function")


@record
class CatalogueEntry:
    """One SageMaker image version and the environment that stands for it."""

    family: str
    repository: str
    version: str
    python: str
    packages: tuple[str, ...]
    source: tuple[str, ...]
    mode: str = "script"
    aliases: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    large: bool = False
    facts: str = ""
    note: str = ""
    as_of: str | None = None

    @property
    def name(self) -> str:
        """``repository:version``, the name the CLI shows."""
        return f"{self.repository}:{self.version}"

    @property
    def versions(self) -> tuple[str, ...]:
        """Every tag version naming this image."""
        return (self.version, *self.aliases)


def parse_entry(table: dict[str, Any]) -> CatalogueEntry:
    """A catalogue entry from one ``[[image]]`` table.

    Raises:
        ConfigError: for a missing field, an unknown mode or an entry citing no source.
    """
    try:
        entry = CatalogueEntry(
            family=str(table["family"]),
            repository=str(table["repository"]),
            version=str(table["version"]),
            python=str(table["python"]),
            packages=tuple(str(p) for p in table["packages"]),
            source=tuple(str(s) for s in table["source"]),
            mode=str(table.get("mode", "script")),
            aliases=tuple(str(a) for a in table.get("aliases", ())),
            dropped=tuple(str(d) for d in table.get("dropped", ())),
            large=bool(table.get("large", False)),
            facts=str(table.get("facts", "")),
            note=str(table.get("note", "")),
            as_of=str(table["as_of"]) if "as_of" in table else None,
        )
    except KeyError as exc:
        raise ConfigError(f"catalogue entry {table.get('repository')!r}: no {exc}") from None
    if entry.mode not in MODES:
        raise ConfigError(f"catalogue entry {entry.name}: mode {entry.mode!r}; use one of {MODES}")
    if not entry.source:
        raise ConfigError(f"catalogue entry {entry.name} cites no source")
    return entry


@functools.cache
def load_catalogue() -> tuple[CatalogueEntry, ...]:
    """Every entry of the packaged catalogue, in file order."""
    # pkgutil rather than importlib.resources: the same file, without importing zipfile
    raw = pkgutil.get_data("sagepipe.images", "catalogue.toml")
    if raw is None:
        raise ConfigError("the image catalogue (sagepipe/images/catalogue.toml) cannot be read")
    text = raw.decode("utf-8")
    return tuple(parse_entry(table) for table in tomllib.loads(text)["image"])
