"""Carry out a sync plan: parallel verified transfers, folder markers, deletions, the manifest."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import field
from pathlib import Path

from sagepipe.errors import SagepipeError, SyncError
from sagepipe.records import record
from sagepipe.storage import ConditionFailedError, ObjectInfo, ObjectStore
from sagepipe.storage.base import md5_stream
from sagepipe.storage.digests import etag_parts, multipart_etag
from sagepipe.storage.s3 import PART_SIZE
from sagepipe.sync.localfs import ChangedError, Destination, current_umask, folder_lock
from sagepipe.sync.manifest import Entry, Manifest
from sagepipe.sync.plan import (
    CONFLICT,
    DELETE,
    MKDIR,
    REFUSED,
    TRANSFER,
    UNCHANGED,
    Action,
    Options,
    Plan,
    make_plan,
)
from sagepipe.sync.scan import Filters, LocalFile, RemoteObject, scan_local, scan_remote

Progress = Callable[[int], None]


@record(frozen=False)
class SyncReport:
    """What happened, for the summary and the exit code."""

    plan: Plan
    dry_run: bool
    sent_files: int = 0
    sent_bytes: int = 0
    deleted: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    skipped_local: list[tuple[str, str]] = field(default_factory=list)
    conflicts: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No errors, conflicts (planned or met during the transfer) or refused keys."""
        return (
            not self.errors
            and not self.conflicts
            and not self.plan.of(CONFLICT)
            and not self.plan.of(REFUSED)
        )


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
        return expected if etag_parts(expected) == etag_parts(remote_etag) else None


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
    """Push ``folder`` to ``s3://bucket/prefix`` or pull the prefix into ``folder``.

    One sync per folder runs at a time (``.sagepipe/sync.lock``); a dry run takes no lock.
    """
    if direction == "push" and not folder.is_dir():
        raise SyncError(f"{folder} is not a folder")
    if dry_run:
        return _sync(
            store, bucket, prefix, folder, direction, options, filters, True, None, 1, on_plan
        )
    if direction == "pull":
        folder.mkdir(parents=True, exist_ok=True)
    with folder_lock(folder):
        return _sync(
            store,
            bucket,
            prefix,
            folder,
            direction,
            options,
            filters,
            False,
            progress,
            workers,
            on_plan,
        )


def _sync(
    store: ObjectStore,
    bucket: str,
    prefix: str,
    folder: Path,
    direction: str,
    options: Options,
    filters: Filters,
    dry_run: bool,
    progress: Progress | None,
    workers: int,
    on_plan: Callable[[Plan], None] | None = None,
) -> SyncReport:
    prefix = prefix.strip("/")
    remote_root = f"s3://{bucket}/{prefix + '/' if prefix else ''}"
    with ThreadPoolExecutor(max_workers=1) as side:  # the folder is read while the bucket lists
        local_scan = side.submit(scan_local, folder, filters)
        manifest_read = side.submit(Manifest, folder, remote_root)
        remote = scan_remote(store, bucket, prefix, filters)
        local, manifest = local_scan.result(), manifest_read.result()
    hasher = _Hasher(folder)
    plan = make_plan(
        direction, local.files, remote, manifest.entries, options, hasher.md5, hasher.etag
    )
    plan.actions[:0] = [Action(REFUSED, rel, why) for rel, why in local.refused]
    report = SyncReport(plan, dry_run, skipped_local=local.skipped)
    if on_plan is not None:
        on_plan(plan)
    if dry_run:
        return report
    lock = threading.Lock()
    dest = Destination(folder, current_umask())

    def remember(rel: str, entry: Entry | None) -> None:
        with lock:
            manifest.set(rel, entry)

    def failed(rel: str, exc: Exception) -> None:
        with lock:
            if isinstance(exc, ChangedError | ConditionFailedError):
                report.conflicts.append((rel, str(exc)))
            else:
                report.errors.append((rel, str(exc)))

    def landed(rel: str) -> str | None:
        """The object's ETag when it now holds exactly this file, else None. The object
        changed since it was listed, but maybe into this very file: the upload of a push
        killed a moment before can land after this push listed the bucket."""
        now = store.head(remote_root + rel)
        if now is None or not now.etag:
            return None
        return now.etag if hasher.etag(rel, now.etag) == now.etag else None

    def push_one(rel: str) -> None:
        f, r = local.files[rel], remote.get(rel)
        path = folder / rel
        try:
            etag = store.put_file(
                remote_root + rel,
                path,
                if_match=r.etag if r is not None and r.etag else None,
                if_none_match=r is None,
                mode=path.stat().st_mode,
            )
        except ConditionFailedError:
            there = landed(rel)
            if there is None:
                raise
            etag = there
        # The planned stat, not a fresh one: an edit made during the upload stays a change.
        remember(rel, Entry(f.size, etag, _plain_md5(etag), f.mtime, 0.0))

    def pull_one(rel: str) -> None:
        obj, f = remote[rel], local.files.get(rel)
        tmp = dest.temp_path()
        try:
            meta = store.get_file(
                remote_root + rel, tmp, ObjectInfo(bucket, obj.key, obj.size, obj.etag, obj.mtime)
            )
            md5 = _plain_md5(obj.etag) if obj.etag else _file_md5(tmp)
            expected = (f.size, f.mtime) if f is not None else None
            st = dest.install(tmp, rel, expected, obj.mtime, _executable(meta))
        finally:
            tmp.unlink(missing_ok=True)
        remember(rel, Entry(obj.size, obj.etag, md5, st.st_mtime, obj.mtime))

    def do(action: Action) -> None:
        try:
            (push_one if direction == "push" else pull_one)(action.path)
            with lock:
                report.sent_files += 1
                report.sent_bytes += action.size
        except (SagepipeError, OSError) as exc:
            failed(action.path, exc)
        if progress is not None:
            progress(action.size)

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(do, plan.of(TRANSFER)))
        for action in plan.of(MKDIR):
            try:
                if direction == "push":
                    store.put(remote_root + action.path, b"")
                else:
                    dest.mkdir(action.path.rstrip("/"))
            except (SagepipeError, OSError) as exc:
                failed(action.path, exc)
        for action in plan.of(DELETE):
            try:
                _delete(store, remote_root, dest, direction, action.path, local.files, remote)
                remember(action.path, None)
                report.deleted += 1
            except (SagepipeError, OSError) as exc:
                failed(action.path, exc)
        _record_unchanged(plan, local.files, remote, dict(manifest.entries), hasher, remember)
    finally:
        dest.close()
        manifest.save()
    return report


def _delete(
    store: ObjectStore,
    remote_root: str,
    dest: Destination,
    direction: str,
    rel: str,
    local: Mapping[str, LocalFile],
    remote: Mapping[str, RemoteObject],
) -> None:
    """Delete one path at the destination only if it is still as the plan saw it."""
    if direction == "push":
        r = remote.get(rel)
        etag = r.etag if r is not None and not r.is_folder and r.etag else None
        store.delete(remote_root + rel, if_match=etag)
        return
    f = local.get(rel)
    if f is not None and f.is_folder:
        dest.remove(rel.rstrip("/") + "/", None)
    else:
        dest.remove(rel, (f.size, f.mtime) if f is not None else None)


def _executable(meta: Mapping[str, str] | None) -> bool | None:
    """Whether the object's recorded mode is executable; None when it records none."""
    try:
        return bool(int((meta or {})["mode"], 8) & 0o111)
    except (KeyError, ValueError):
        return None


def _file_md5(path: Path) -> str:
    with path.open("rb") as fh:
        return md5_stream(fh)


def _record_unchanged(
    plan: Plan,
    local: Mapping[str, LocalFile],
    remote: Mapping[str, RemoteObject],
    known: Mapping[str, Entry],
    hasher: _Hasher,
    remember: Callable[[str, Entry | None], None],
) -> None:
    for action in plan.of(UNCHANGED):
        f, r = local.get(action.path), remote.get(action.path)
        if f is None or r is None or f.is_folder:
            continue
        m = known.get(action.path)
        if m is not None and m.size == f.size and m.local_mtime == f.mtime and m.etag == r.etag:
            continue  # already recorded as it is
        md5 = m.md5 if m is not None and m.local_mtime == f.mtime else hasher.md5(action.path)
        remember(action.path, Entry(f.size, r.etag, md5, f.mtime, r.mtime))


def _plain_md5(etag: str) -> str:
    """The MD5 an ETag is, or '' for multipart ETags (then the ETag itself is compared)."""
    return etag if len(etag) == 32 and "-" not in etag else ""
