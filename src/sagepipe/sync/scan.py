"""List a local folder and a remote prefix as relative paths, with filters."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sagepipe.storage import ObjectStore

DEFAULT_EXCLUDES = (
    ".env",
    ".git/",
    ".venv/",
    "__pycache__/",
    "*.pyc",
    ".sagepipe/",
    ".sagepipe-sync.json",
    ".sagepipe-tmp-*",
)
IGNORE_FILE = ".sagepipeignore"


@dataclass(frozen=True)
class LocalFile:
    """A local file or an empty folder (``is_folder``)."""

    size: int
    mtime: float
    is_folder: bool = False


@dataclass(frozen=True)
class RemoteObject:
    """A remote object or folder marker."""

    size: int
    etag: str
    mtime: float
    key: str

    @property
    def is_folder(self) -> bool:
        return self.key.endswith("/")


@dataclass
class Filters:
    """Include/exclude globs (matched against relative paths; ``dir/`` matches a folder)."""

    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDES))

    def __post_init__(self) -> None:
        def rx(patterns: list[str]) -> re.Pattern[str] | None:
            return (
                re.compile("|".join(fnmatch.translate(p) for p in patterns)) if patterns else None
            )

        self._dirs = rx([p.rstrip("/") for p in self.exclude if p.endswith("/")])
        self._files = rx([p for p in self.exclude if not p.endswith("/")])
        self._include = rx(list(self.include))

    @classmethod
    def build(cls, include: Iterable[str], exclude: Iterable[str], folder: Path | None) -> Filters:
        extra = list(exclude)
        if folder is not None and (folder / IGNORE_FILE).is_file():
            for line in (folder / IGNORE_FILE).read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    extra.append(line)
        return cls(list(include), [*DEFAULT_EXCLUDES, *extra])

    def wanted(self, rel: str) -> bool:
        """Whether ``rel`` takes part in the sync."""
        is_dir = rel.endswith("/")
        parts = rel.rstrip("/").split("/")
        folders = parts if is_dir else parts[:-1]
        if self._dirs is not None and any(self._dirs.match(p) for p in folders):
            return False
        if (
            self._files is not None
            and not is_dir
            and (self._files.match(rel) or self._files.match(parts[-1]))
        ):
            return False
        if self._include is not None and not is_dir:
            return bool(self._include.match(rel))
        return True


@dataclass
class LocalScan:
    """A local folder's files, plus what was skipped and why."""

    files: dict[str, LocalFile]
    skipped: list[tuple[str, str]]


def scan_local(root: Path, filters: Filters) -> LocalScan:
    """Every file (and empty folder) under ``root``; symlinks leaving the tree are skipped."""
    files: dict[str, LocalFile] = {}
    skipped: list[tuple[str, str]] = []
    if not root.exists():
        return LocalScan(files, skipped)
    real_root = str(root.resolve())
    stack = [(str(root), "")]
    while stack:
        folder, rel_dir = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            skipped.append((rel_dir, f"unreadable: {exc.strerror}"))
            continue
        if rel_dir and not entries:
            files[rel_dir] = LocalFile(0, 0.0, is_folder=True)
            continue
        for entry in entries:
            rel = rel_dir + entry.name
            if entry.is_dir(follow_symlinks=False):
                if filters.wanted(rel + "/"):
                    stack.append((entry.path, rel + "/"))
                continue
            if entry.is_symlink():
                if entry.is_dir():
                    skipped.append((rel + "/", "symlinked folder not followed"))
                    continue
                target = os.path.realpath(entry.path)
                if not target.startswith(real_root + os.sep) or not os.path.isfile(target):
                    skipped.append((rel, "symlink points outside the folder"))
                    continue
            if not filters.wanted(rel):
                continue
            try:
                st = entry.stat()
            except OSError as exc:
                skipped.append((rel, f"unreadable: {exc.strerror}"))
                continue
            files[rel] = LocalFile(st.st_size, st.st_mtime)
    return LocalScan(files, skipped)


def scan_remote(
    store: ObjectStore, bucket: str, prefix: str, filters: Filters
) -> dict[str, RemoteObject]:
    """Every object under ``prefix`` by path relative to it (keys are not checked here)."""
    base = prefix.strip("/")
    base = base + "/" if base else ""
    out: dict[str, RemoteObject] = {}
    for info in store.list(f"s3://{bucket}/{base}"):
        rel = info.key[len(base) :]
        if not rel or not filters.wanted(rel):
            continue
        out[rel] = RemoteObject(info.size, info.etag, info.last_modified, info.key)
    return out
