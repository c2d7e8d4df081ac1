"""The ObjectStore protocol and URI helpers shared by every store."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from sagepipe.errors import StorageError, UnsafeKeyError


# A plain frozen dataclass, not a record: a sync makes several per file, and dataclasses'
# own __init__ sets fields faster than a record's shared __setattr__ (sagepipe/records.py).
@dataclass(frozen=True)
class ObjectInfo:
    """One object: its key, size, ETag (may be empty for local listings) and mtime."""

    bucket: str
    key: str
    size: int
    etag: str = ""
    last_modified: float = 0.0

    @property
    def uri(self) -> str:
        """The object's ``s3://`` URI."""
        return f"s3://{self.bucket}/{self.key}"

    @property
    def is_folder(self) -> bool:
        """Whether this is a zero-byte ``folder/`` marker."""
        return self.key.endswith("/")


class ConditionFailedError(StorageError):
    """A conditional write or delete found the object other than the caller saw it."""


def parse_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into bucket and key."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise StorageError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise StorageError(f"{uri!r} has no bucket")
    return bucket, key


def md5_chunks(chunks: Iterable[bytes], sink: Callable[[bytes], object] | None = None) -> str:
    """The hex MD5 of ``chunks``, each chunk handed to ``sink`` on the way."""
    digest = hashlib.md5(usedforsecurity=False)
    for block in chunks:
        digest.update(block)
        if sink is not None:
            sink(block)
    return digest.hexdigest()


def md5_stream(
    source: BinaryIO, sink: Callable[[bytes], object] | None = None, chunk: int = 1 << 20
) -> str:
    """The hex MD5 of everything ``source`` yields, each chunk handed to ``sink`` on the way."""
    return md5_chunks(iter(lambda: source.read(chunk), b""), sink)


def join_uri(uri: str, *parts: str) -> str:
    """``uri`` with ``parts`` appended, one slash between each."""
    out = uri.rstrip("/")
    for p in parts:
        out += "/" + p.strip("/")
    return out


def safe_key(key: str) -> str:
    """Return ``key`` if it cannot escape a directory root, else raise UnsafeKeyError."""
    problem = None
    if "\x00" in key:
        problem = "contains NUL"
    elif "\\" in key:
        problem = "contains a backslash"
    elif key.startswith("/"):
        problem = "is absolute"
    elif len(key) > 1 and key[1] == ":":
        problem = "starts with a drive letter"
    elif any(part in ("..", ".") for part in key.split("/")):
        problem = "has a '.' or '..' segment"
    if problem:
        raise UnsafeKeyError(f"key {key!r} {problem}; refused")
    return key


class ObjectStore(Protocol):
    """Byte-level access to objects; every method takes ``s3://`` URIs."""

    def head(self, uri: str) -> ObjectInfo | None:
        """The object's info, or None when it does not exist."""
        ...

    def get(self, uri: str) -> bytes:
        """The object's bytes; ObjectNotFoundError when missing."""
        ...

    def put(self, uri: str, data: bytes) -> None:
        """Write the object atomically."""
        ...

    def put_file(
        self,
        uri: str,
        path: Path,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        mode: int | None = None,
    ) -> str:
        """Upload a local file, verified; returns the object's ETag.

        ``if_match`` (an ETag) or ``if_none_match`` make the write conditional: when the object
        is not as the caller saw it, nothing is written and ConditionFailedError is raised.
        ``mode`` (permission bits) is recorded with the object where the store can keep it.
        """
        ...

    def get_file(self, uri: str, path: Path, expected: ObjectInfo | None = None) -> dict[str, str]:
        """Download to ``path`` through a temporary file renamed into place.

        ``expected`` (from a listing) spares a HEAD request and is checked against the data.
        Returns the object's user metadata where the store saw it (``mode``: octal bits).
        """
        ...

    def list(self, uri: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with the URI's key, folder markers included."""
        ...

    def delete(self, uri: str, *, if_match: str | None = None) -> None:
        """Delete the object (no error when missing); ``if_match`` as for ``put_file``."""
        ...

    def ensure_bucket(self, bucket: str) -> bool:
        """Create the bucket when missing; True when it was created."""
        ...

    def local_path(self, uri: str) -> Path | None:
        """The object's file on this machine when the store keeps one (for hard links)."""
        ...


class Blob(Protocol):
    """Something to upload: its URI and its bytes (the compiler's upload plan items)."""

    @property
    def uri(self) -> str:
        """Where the object goes."""
        ...

    def read(self) -> bytes:
        """The object's bytes."""
        ...


def put_missing(
    store: ObjectStore, items: Iterable[Blob], dry_run: bool = False
) -> tuple[list[str], list[str]]:
    """Upload the items not already in ``store``; returns (uploaded or to upload, present)."""
    missing: list[str] = []
    present: list[str] = []
    buckets: set[str] = set()
    for item in items:
        info = store.head(item.uri)
        if info is not None and _holds(info, item):
            present.append(item.uri)
            continue
        missing.append(item.uri)
        if dry_run:
            continue
        bucket = parse_uri(item.uri)[0]
        if bucket not in buckets:
            store.ensure_bucket(bucket)
            buckets.add(bucket)
        store.put(item.uri, item.read())
    return missing, present


def _holds(info: ObjectInfo, item: Blob) -> bool:
    """Whether a present object has ``item``'s bytes (judged by a plain MD5 ETag).

    Content-addressed code keys are trusted only when their content still matches: an object
    changed by hand or by another writer is uploaded again. A multipart or encrypted ETag says
    nothing about the content, so such an object is uploaded again too (code files are small).
    """
    etag = info.etag
    if len(etag) != 32 or "-" in etag:
        return False
    return hashlib.md5(item.read(), usedforsecurity=False).hexdigest() == etag
