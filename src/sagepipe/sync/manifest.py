"""The sync manifest: what each side looked like after the last sync of a folder and a prefix.

Kept in ``<folder>/.sagepipe-sync.json``, one entry per remote prefix, so a change on either
side since then is told apart from a change on both (a conflict).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from sagepipe.storage.local import atomic_write

MANIFEST_NAME = ".sagepipe-sync.json"


@dataclass(frozen=True)
class Entry:
    """One path as it was after the last sync."""

    size: int
    etag: str
    md5: str
    local_mtime: float
    remote_mtime: float


class Manifest:
    """Entries by relative path for one (folder, remote prefix) pair."""

    def __init__(self, folder: Path, remote: str) -> None:
        self.path = folder / MANIFEST_NAME
        self.remote = remote
        self.entries: dict[str, Entry] = {}
        self.dirty = False
        self._all: dict[str, dict[str, dict[str, float | int | str]]] = {}
        if self.path.is_file():
            try:
                self._all = json.loads(self.path.read_text())
                raw = self._all.get(remote, {})
                self.entries = {k: Entry(**v) for k, v in raw.items()}  # type: ignore[arg-type]
            except (ValueError, TypeError):
                self._all, self.entries = {}, {}  # unreadable: behave as a first sync

    @property
    def exists(self) -> bool:
        """Whether a previous sync of this pair was recorded."""
        return bool(self.entries)

    def set(self, rel: str, entry: Entry | None) -> None:
        """Record ``rel`` as synced (or forget it when ``entry`` is None)."""
        self.dirty = True
        if entry is None:
            self.entries.pop(rel, None)
        else:
            self.entries[rel] = entry

    def save(self) -> None:
        """Write atomically (nothing to do when no entry changed)."""
        if not self.dirty:
            return
        self._all[self.remote] = {k: asdict(v) for k, v in sorted(self.entries.items())}
        atomic_write(self.path, json.dumps(self._all).encode())
