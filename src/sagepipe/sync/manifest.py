"""The sync manifest: what each side looked like after the last sync of a folder and a prefix.

Kept in ``<folder>/.sagepipe-sync.json``, one entry per remote prefix, so a change on either
side since then is told apart from a change on both (a conflict). Each transfer appends its
entry to ``.sagepipe/sync-journal.jsonl`` as soon as it is done, so a killed sync loses no
record; the next sync folds the journal into the manifest. Saving re-reads the manifest and
applies only the entries this sync changed (per key, never the whole file from memory).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from sagepipe.storage.local import atomic_write

MANIFEST_NAME = ".sagepipe-sync.json"
JOURNAL = ".sagepipe/sync-journal.jsonl"


# A plain frozen dataclass, not a record: a sync makes several per file, and dataclasses'
# own __init__ sets fields faster than a record's shared __setattr__ (sagepipe/records.py).
@dataclass(frozen=True)
class Entry:
    """One path as it was after the last sync."""

    size: int
    etag: str
    md5: str
    local_mtime: float
    remote_mtime: float


def _entries(raw: Any) -> dict[str, Entry]:
    try:
        return {k: Entry(**v) for k, v in raw.items()}
    except (AttributeError, TypeError):
        return {}


class Manifest:
    """Entries by relative path for one (folder, remote prefix) pair."""

    def __init__(self, folder: Path, remote: str) -> None:
        self.path = folder / MANIFEST_NAME
        self.journal = folder / JOURNAL
        self.remote = remote
        self._all = self._read()
        self._replay()
        self.entries: dict[str, Entry] = _entries(self._all.get(remote, {}))
        self._changed: dict[str, Entry | None] = {}
        self._log: IO[str] | None = None

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # missing or unreadable: behave as a first sync
        return data if isinstance(data, dict) else {}

    def _replay(self) -> None:
        """Apply what a killed sync recorded in the journal (a torn last line is skipped)."""
        try:
            lines = self.journal.read_text().splitlines()
        except OSError:
            return
        for line in lines:
            try:
                remote, rel, entry = json.loads(line)
            except (ValueError, TypeError):
                continue
            side = self._all.setdefault(remote, {})
            if entry is None:
                side.pop(rel, None)
            else:
                side[rel] = entry

    @property
    def exists(self) -> bool:
        """Whether a previous sync of this pair was recorded."""
        return bool(self.entries)

    def set(self, rel: str, entry: Entry | None) -> None:
        """Record ``rel`` as synced (or forget it when ``entry`` is None), journaled at once."""
        if entry is None:
            self.entries.pop(rel, None)
        else:
            self.entries[rel] = entry
        self._changed[rel] = entry
        if self._log is None:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            self._log = os.fdopen(os.open(self.journal, flags, 0o666), "a", encoding="utf-8")
            if self._log.tell() and not self.journal.read_bytes().endswith(b"\n"):
                self._log.write("\n")  # end a line torn by a killed sync
        raw = asdict(entry) if entry is not None else None
        self._log.write(json.dumps([self.remote, rel, raw]) + "\n")
        self._log.flush()

    def save(self) -> None:
        """Fold this sync's entries (and any journal) into the manifest, then empty the journal.

        Callers hold the folder's sync lock, so no other sync writes meanwhile.
        """
        if self._log is not None:
            self._log.close()
            self._log = None
        if not self._changed and not self.journal.exists():
            return
        self._all = self._read()
        self._replay()  # every sync's entries, ours included, in the order they happened
        self._all[self.remote] = dict(sorted(self._all.get(self.remote, {}).items()))
        merged = self._all
        atomic_write(self.path, json.dumps(merged).encode())
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.journal)
        self._changed.clear()
