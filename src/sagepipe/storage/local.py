"""LocalStore: buckets as directories under a root; the embedded default for local runs."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sagepipe.config import check_bucket_name
from sagepipe.errors import ConfigError, ObjectNotFoundError, StorageError
from sagepipe.storage.base import ObjectInfo, md5_stream, parse_uri, safe_key

TMP_PREFIX = ".sagepipe-tmp-"


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
        return ObjectInfo(bucket, key, st.st_size, _md5(path), st.st_mtime)

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

    def put_file(self, uri: str, path: Path) -> str:
        _, _, dest = self._path(uri)
        self._check_parent(uri, dest)
        return atomic_copy(path, dest)

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

    def get_file(self, uri: str, path: Path, expected: ObjectInfo | None = None) -> None:
        _, _, src = self._path(uri)
        if not src.is_file():
            raise ObjectNotFoundError(f"{uri} does not exist")
        atomic_copy(src, path)

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
                    st = os.stat(os.path.join(root, name))
                    yield ObjectInfo(bucket, key, st.st_size, "", st.st_mtime)

    def delete(self, uri: str) -> None:
        _, key, path = self._path(uri)
        if key.endswith("/"):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
            return
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
