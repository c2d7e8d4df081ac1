"""List a local folder and a remote prefix as relative paths, with filters."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from sagepipe.errors import SyncError
from sagepipe.records import record
from sagepipe.storage import ObjectStore

# Credentials never leave the machine by accident; the README lists these.
SECRET_EXCLUDES = (
    ".env*",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    ".ssh/",
    ".aws/",
    ".netrc",
    ".pgpass",
    ".pypirc",
    ".npmrc",
    ".git-credentials",
    ".dockercfg",
    ".docker/config.json",
    "credentials.json",
    "service-account*.json",
)
DEFAULT_EXCLUDES = (
    *SECRET_EXCLUDES,
    ".git/",
    ".venv/",
    "__pycache__/",
    "*.pyc",
    ".sagepipe/",
    ".sagepipe-sync.json",
    ".sagepipe-tmp-*",
)
IGNORE_FILE = ".sagepipeignore"


# A plain frozen dataclass, not a record: a sync makes several per file, and dataclasses'
# own __init__ sets fields faster than a record's shared __setattr__ (sagepipe/records.py).
@dataclass(frozen=True)
class LocalFile:
    """A local file or an empty folder (``is_folder``)."""

    size: int
    mtime: float
    is_folder: bool = False


# A plain frozen dataclass, not a record: a sync makes several per file, and dataclasses'
# own __init__ sets fields faster than a record's shared __setattr__ (sagepipe/records.py).
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


@record(frozen=False)
class Filters:
    """Which relative paths take part in a sync, with gitignore semantics (``pathspec``).

    ``exclude`` lines are gitignore lines: the defaults, then ``.sagepipeignore``, then
    ``--exclude``; a later ``!pattern`` re-includes, ``/x`` anchors at the folder, ``dir/``
    matches folders, ``**`` spans folders. As in git, nothing under an excluded folder can be
    re-included. ``include`` patterns (same syntax), when given, keep only matching files.
    """

    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDES))

    def __post_init__(self) -> None:
        self._exclude = _matcher(self.exclude)
        self._include = _matcher(self.include) if self.include else None
        self._folders: dict[str, bool] = {}

    def _folder_excluded(self, folder: str) -> bool:
        """Whether ``folder`` or a folder above it is excluded (cached: files share folders)."""
        hit = self._folders.get(folder)
        if hit is None:
            up = folder.rpartition("/")[0]
            hit = bool(up and self._folder_excluded(up)) or self._exclude(folder + "/")
            self._folders[folder] = hit
        return hit

    @classmethod
    def build(cls, include: Iterable[str], exclude: Iterable[str], folder: Path | None) -> Filters:
        """The defaults, ``folder``'s ``.sagepipeignore`` and the command line's patterns."""
        lines = list(DEFAULT_EXCLUDES)
        ignore = folder / IGNORE_FILE if folder is not None else None
        if ignore is not None and ignore.is_file():
            try:
                lines += ignore.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise SyncError(f"cannot read {ignore}: {exc}") from None
        return cls(list(include), [*lines, *exclude])

    def wanted(self, rel: str) -> bool:
        """Whether ``rel`` (a ``folder/`` ends with a slash) takes part in the sync."""
        parent = rel.rstrip("/").rpartition("/")[0]
        if parent and self._folder_excluded(parent):
            return False
        if self._exclude(rel):
            return False
        if self._include is not None and not rel.endswith("/"):
            return self._include(rel)
        return True


def _matcher(lines: list[str]) -> Callable[[str], bool]:
    """Whether a relative path matches ``lines`` (gitignore semantics).

    Without a ``!`` re-include, the last matching pattern is always an exclusion, so "does any
    pattern match" decides: the patterns' expressions joined into one are matched once per
    path, not one by one (10,000 files: about 1.4 s -> 0.03 s).
    """
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    patterns = [p for p in spec.patterns if p.include is not None]
    regexes = [getattr(p, "regex", None) for p in patterns]
    if any(not p.include for p in patterns) or not all(isinstance(r, re.Pattern) for r in regexes):
        return spec.match_file
    if not patterns:
        return lambda _rel: False
    joined = "|".join(
        f"(?:{_NAMED_GROUP.sub('(?:', r.pattern)})" for r in regexes if isinstance(r, re.Pattern)
    )
    combined = re.compile(joined)
    return lambda rel: combined.match(rel) is not None


_NAMED_GROUP = re.compile(r"\(\?P<[A-Za-z_][A-Za-z0-9_]*>")


@record(frozen=False)
class LocalScan:
    """A local folder's files, plus what was skipped and why."""

    files: dict[str, LocalFile]
    skipped: list[tuple[str, str]]
    refused: list[tuple[str, str]] = field(default_factory=list)


def scan_local(root: Path, filters: Filters) -> LocalScan:
    """Every file (and empty folder) under ``root``; symlinks leaving the tree are skipped."""
    files: dict[str, LocalFile] = {}
    skipped: list[tuple[str, str]] = []
    refused: list[tuple[str, str]] = []
    if not root.exists():
        return LocalScan(files, skipped, refused)
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
            if not _utf8(entry.name):
                shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                refused.append((shown, "the name is not UTF-8, which S3 keys must be; rename it"))
                continue
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
            if not stat.S_ISREG(st.st_mode):
                skipped.append((rel, "not a regular file (FIFO, socket or device)"))
                continue
            files[rel] = LocalFile(st.st_size, st.st_mtime)
    return LocalScan(files, skipped, refused)


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
