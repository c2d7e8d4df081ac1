"""Carry out a sync plan: parallel verified transfers, folder markers, deletions, the manifest."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sagepipe.errors import SagepipeError, SyncError
from sagepipe.storage import ObjectInfo, ObjectStore
from sagepipe.storage.local import TMP_PREFIX
from sagepipe.storage.s3 import PART_SIZE, multipart_etag
from sagepipe.sync.manifest import Entry, Manifest
from sagepipe.sync.plan import (
    CONFLICT,
    DELETE,
    MKDIR,
    REFUSED,
    TRANSFER,
    UNCHANGED,
    Options,
    Plan,
    make_plan,
)
from sagepipe.sync.scan import Filters, LocalFile, RemoteObject, scan_local, scan_remote

Progress = Callable[[int], None]


@dataclass
class SyncReport:
    """What happened, for the summary and the exit code."""

    plan: Plan
    dry_run: bool
    sent_files: int = 0
    sent_bytes: int = 0
    deleted: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    skipped_local: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No errors, conflicts or refused keys."""
        return not self.errors and not self.plan.of(CONFLICT) and not self.plan.of(REFUSED)


class _Hasher:
    """Local MD5s, computed at most once per file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._md5: dict[str, str] = {}
        self._parts: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()

    def parts(self, rel: str) -> list[bytes]:
        with self._lock:
            cached = self._parts.get(rel)
        if cached is not None:
            return cached
        digests: list[bytes] = []
        whole = hashlib.md5(usedforsecurity=False)
        with (self.root / rel).open("rb") as fh:
            for chunk in iter(lambda: fh.read(PART_SIZE), b""):
                digests.append(hashlib.md5(chunk, usedforsecurity=False).digest())
                whole.update(chunk)
        with self._lock:
            self._parts[rel] = digests
            self._md5[rel] = whole.hexdigest()
        return digests

    def md5(self, rel: str) -> str:
        with self._lock:
            if rel in self._md5:
                return self._md5[rel]
        self.parts(rel)
        return self._md5[rel]

    def etag(self, rel: str, remote_etag: str) -> str | None:
        """The ETag this file would have in the form of ``remote_etag`` (plain or multipart)."""
        if "-" not in remote_etag:
            return self.md5(rel)
        digests = self.parts(rel)
        expected = multipart_etag(digests)
        return expected if expected.rsplit("-", 1)[1] == remote_etag.rsplit("-", 1)[1] else None


def sync(
    store: ObjectStore,
    bucket: str,
    prefix: str,
    folder: Path,
    direction: str,
    options: Options,
    filters: Filters,
    dry_run: bool = False,
    progress: Progress | None = None,
    workers: int = 16,
    on_plan: Callable[[Plan], None] | None = None,
) -> SyncReport:
    """Push ``folder`` to ``s3://bucket/prefix`` or pull the prefix into ``folder``."""
    prefix = prefix.strip("/")
    if direction == "push" and not folder.is_dir():
        raise SyncError(f"{folder} is not a folder")
    if direction == "pull" and not dry_run:
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_temp_files(folder)
    remote_root = f"s3://{bucket}/{prefix + '/' if prefix else ''}"
    manifest = Manifest(folder, remote_root)
    local = scan_local(folder, filters)
    remote = scan_remote(store, bucket, prefix, filters)
    hasher = _Hasher(folder)
    plan = make_plan(
        direction, local.files, remote, manifest.entries, options, hasher.md5, hasher.etag
    )
    report = SyncReport(plan, dry_run, skipped_local=local.skipped)
    if on_plan is not None:
        on_plan(plan)
    if dry_run:
        return report
    lock = threading.Lock()

    def record(rel: str, entry: Entry | None) -> None:
        with lock:
            manifest.set(rel, entry)

    def do(action_path: str, size: int) -> None:
        uri = remote_root + action_path
        path = folder / action_path
        try:
            if direction == "push":
                etag = store.put_file(uri, path)
                st = path.stat()
                record(action_path, Entry(st.st_size, etag, _plain_md5(etag), st.st_mtime, 0.0))
            else:
                obj = remote[action_path]
                store.get_file(
                    uri, path, ObjectInfo(bucket, obj.key, obj.size, obj.etag, obj.mtime)
                )
                os.utime(path, (obj.mtime, obj.mtime))
                md5 = _plain_md5(obj.etag) if obj.etag else hasher.md5(action_path)
                record(action_path, Entry(obj.size, obj.etag, md5, path.stat().st_mtime, obj.mtime))
            with lock:
                report.sent_files += 1
                report.sent_bytes += size
        except (SagepipeError, OSError) as exc:
            with lock:
                report.errors.append((action_path, str(exc)))
        if progress is not None:
            progress(size)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda a: do(a.path, a.size), plan.of(TRANSFER)))
    for action in plan.of(MKDIR):
        try:
            if direction == "push":
                store.put(remote_root + action.path, b"")
            else:
                (folder / action.path).mkdir(parents=True, exist_ok=True)
        except (SagepipeError, OSError) as exc:
            report.errors.append((action.path, str(exc)))
    for action in plan.of(DELETE):
        try:
            if direction == "push":
                store.delete(remote_root + action.path)
            else:
                target = folder / action.path
                if target.is_dir():
                    target.rmdir()
                else:
                    target.unlink(missing_ok=True)
            record(action.path, None)
            report.deleted += 1
        except (SagepipeError, OSError) as exc:
            report.errors.append((action.path, str(exc)))
    _record_unchanged(plan, local.files, remote, dict(manifest.entries), hasher, record)
    manifest.save()
    return report


def _record_unchanged(
    plan: Plan,
    local: Mapping[str, LocalFile],
    remote: Mapping[str, RemoteObject],
    known: Mapping[str, Entry],
    hasher: _Hasher,
    record: Callable[[str, Entry | None], None],
) -> None:
    for action in plan.of(UNCHANGED):
        f, r = local.get(action.path), remote.get(action.path)
        if f is None or r is None or f.is_folder:
            continue
        m = known.get(action.path)
        if m is not None and m.size == f.size and m.local_mtime == f.mtime and m.etag == r.etag:
            continue  # already recorded as it is
        md5 = m.md5 if m is not None and m.local_mtime == f.mtime else hasher.md5(action.path)
        record(action.path, Entry(f.size, r.etag, md5, f.mtime, r.mtime))


def _plain_md5(etag: str) -> str:
    """The MD5 an ETag is, or '' for multipart ETags (then the ETag itself is compared)."""
    return etag if len(etag) == 32 and "-" not in etag else ""


def _remove_stale_temp_files(folder: Path) -> None:
    """Temp files an interrupted pull left behind (never a finished file)."""
    for dirpath, _, files in os.walk(folder):
        for name in files:
            if name.startswith(TMP_PREFIX):
                Path(dirpath, name).unlink(missing_ok=True)
