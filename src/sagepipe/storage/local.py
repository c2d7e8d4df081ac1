"""LocalStore: buckets as directories under a root; the embedded default for local runs."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sagepipe.config import check_bucket_name
from sagepipe.errors import ConfigError, ObjectNotFoundError, StorageError
from sagepipe.storage.base import (
    ConditionFailedError,
    ObjectInfo,
    md5_stream,
    parse_uri,
    safe_key,
)

TMP_PREFIX = ".sagepipe-tmp-"
_Stamp = list[int | str]  # inode, size, mtime_ns, ctime_ns, md5


@contextmanager
def replaced_on_success(path: Path) -> Iterator[int]:
    """A descriptor on a temp file in ``path``'s folder, renamed onto ``path`` when the block
    succeeds and removed when it raises: no reader ever sees part of a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        try:
            yield fd
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    with replaced_on_success(path) as fd, open(fd, "wb", closefd=False) as fh:
        fh.write(data)


def atomic_copy(src: Path, dest: Path) -> str:
    """Copy ``src`` to ``dest`` through a temp file renamed into place; returns the MD5."""
    with (
        replaced_on_success(dest) as fd,
        open(fd, "wb", closefd=False) as out,
        src.open("rb") as fh,
    ):
        return md5_stream(fh, out.write)


class LocalStore:
    """An ObjectStore over ``<root>/<bucket>/<key>``; folder markers are directories."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._etags: dict[str, dict[str, _Stamp]] = {}
        self._etags_dirty: set[str] = set()
        self._etags_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, uri: str) -> tuple[str, str, Path]:
        bucket, key = parse_uri(uri)
        _check_bucket(bucket)
        if key:
            safe_key(key.rstrip("/") if key.endswith("/") else key)
        return bucket, key, self.root / bucket / key

    def head(self, uri: str) -> ObjectInfo | None:
        bucket, key, path = self._path(uri)
        if key.endswith("/") or not key:
            return ObjectInfo(bucket, key, 0) if path.is_dir() and key else None
        if not path.is_file():
            return None
        st = path.stat()
        return ObjectInfo(bucket, key, st.st_size, self._etag(bucket, key, path, st), st.st_mtime)

    def get(self, uri: str) -> bytes:
        _, _, path = self._path(uri)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFoundError(f"{uri} does not exist") from None

    def put(self, uri: str, data: bytes) -> None:
        _, key, path = self._path(uri)
        if key.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            return
        self._check_parent(uri, path)
        atomic_write(path, data)

    def put_file(
        self,
        uri: str,
        path: Path,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        mode: int | None = None,
    ) -> str:
        """Copy ``path`` in; conditions are checked and the copy made under the bucket's lock."""
        bucket, _, dest = self._path(uri)
        self._check_parent(uri, dest)
        with self._locked(bucket) if if_match or if_none_match else contextlib.nullcontext():
            self._check_condition(uri, dest, if_match, if_none_match)
            md5 = atomic_copy(path, dest)
            if mode is not None:  # the store's file keeps the mode, as S3 keeps metadata
                dest.chmod(stat.S_IMODE(mode) & 0o777)
            return md5

    def _check_condition(
        self, uri: str, dest: Path, if_match: str | None, if_none_match: bool
    ) -> None:
        exists = dest.is_file()
        if if_none_match and exists:
            raise ConditionFailedError(f"{uri}: created by another writer since it was listed")
        if if_match and (not exists or _md5(dest) != if_match):
            raise ConditionFailedError(f"{uri}: changed since it was listed")

    @contextlib.contextmanager
    def _locked(self, bucket: str) -> Iterator[None]:
        """An exclusive lock per bucket, shared by every process using this store."""
        folder = self.root / ".locks"
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / f"{bucket}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _check_parent(self, uri: str, path: Path) -> None:
        bucket_root = self.root / parse_uri(uri)[0]
        for parent in path.parents:
            if parent == bucket_root:
                break
            if parent.is_file():
                raise StorageError(
                    f"{uri}: the local store keeps {parent.name!r} as a file, so it cannot "
                    "also be a folder"
                )
        if path.is_dir():
            raise StorageError(f"{uri}: a folder with this name exists in the local store")

    def get_file(self, uri: str, path: Path, expected: ObjectInfo | None = None) -> dict[str, str]:
        """Copy the object out; its metadata is its file's mode (kept from ``put_file``)."""
        _, _, src = self._path(uri)
        if not src.is_file():
            raise ObjectNotFoundError(f"{uri} does not exist")
        atomic_copy(src, path)
        return {"mode": f"{stat.S_IMODE(src.stat().st_mode):o}"}

    def list(self, uri: str) -> Iterator[ObjectInfo]:
        bucket, prefix, _ = self._path(uri)
        base = self.root / bucket
        if not base.is_dir():
            return
        start = base / prefix.rsplit("/", 1)[0] if "/" in prefix else base
        if not start.is_dir():
            return
        for root, dirs, files in os.walk(start):
            dirs.sort()
            rel = Path(root).relative_to(base).as_posix()
            rel = "" if rel == "." else rel + "/"
            if rel and not dirs and not files and rel.startswith(prefix):
                yield ObjectInfo(bucket, rel, 0)
            for name in sorted(files):
                if name.startswith(TMP_PREFIX):
                    continue
                key = rel + name
                if key.startswith(prefix):
                    path = Path(root, name)
                    st = os.stat(path)
                    etag = self._etag(bucket, key, path, st)
                    yield ObjectInfo(bucket, key, st.st_size, etag, st.st_mtime)
        self._save_etags(bucket)

    def _etag(self, bucket: str, key: str, path: Path, st: os.stat_result) -> str:
        """The object's MD5 (its ETag, as on S3), cached by inode, size, mtime and ctime.

        ctime changes on every write and cannot be set back, so an edit that keeps the size
        and the mtime is still seen.
        """
        stamp: _Stamp = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        with self._etags_lock:
            cache = self._etags.get(bucket)
            if cache is None:
                cache = self._etags[bucket] = self._load_etags(bucket)
            hit = cache.get(key)
        if hit is not None and hit[:4] == stamp:
            return str(hit[4])
        try:
            md5 = _md5(path)
        except OSError:
            return ""
        with self._etags_lock:
            cache[key] = [*stamp, md5]
            self._etags_dirty.add(bucket)
        return md5

    def _etags_file(self, bucket: str) -> Path:
        return self.root / ".etags" / f"{bucket}.json"

    def _load_etags(self, bucket: str) -> dict[str, _Stamp]:
        try:
            data = json.loads(self._etags_file(bucket).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_etags(self, bucket: str) -> None:
        """Keep the MD5s for the next process (a cache: losing it costs only time)."""
        with self._etags_lock:
            if bucket not in self._etags_dirty:
                return
            self._etags_dirty.discard(bucket)
            data = json.dumps(self._etags.get(bucket, {})).encode()
        with contextlib.suppress(OSError):
            atomic_write(self._etags_file(bucket), data)

    def delete(self, uri: str, *, if_match: str | None = None) -> None:
        bucket, key, path = self._path(uri)
        if key.endswith("/"):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
            return
        if not if_match:
            path.unlink(missing_ok=True)
            return
        with self._locked(bucket):
            if path.is_file():
                self._check_condition(uri, path, if_match, False)
            path.unlink(missing_ok=True)

    def ensure_bucket(self, bucket: str) -> bool:
        _check_bucket(bucket)
        path = self.root / bucket
        try:
            path.mkdir(parents=True)
        except FileExistsError:  # also when another process made it a moment ago
            return False
        return True

    def local_path(self, uri: str) -> Path | None:
        _, _, path = self._path(uri)
        return path


def _check_bucket(bucket: str) -> None:
    """S3's bucket naming rules, so what works locally also works on S3."""
    try:
        check_bucket_name(bucket)
    except ConfigError as exc:
        raise StorageError(str(exc)) from None


def _md5(path: Path) -> str:
    with path.open("rb") as fh:
        return md5_stream(fh)
