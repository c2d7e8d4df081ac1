"""Input fingerprints: an object is read once per version, never on a decision that finds it
unchanged (reads counted through a wrapper over a real LocalStore)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagepipe.engine.caching import data_changes, fingerprints
from sagepipe.engine.history import History
from sagepipe.storage import LocalStore, ObjectInfo

URI = "s3://bucket/data/part-0.csv"


class CountingStore:
    """A LocalStore that counts the calls that read an object's bytes."""

    def __init__(self, inner: LocalStore) -> None:
        self.inner = inner
        self.reads: list[str] = []

    def local_path(self, uri: str) -> Path | None:  # the fingerprint code opens this file
        self.reads.append(uri)
        return self.inner.local_path(uri)

    def get(self, uri: str) -> bytes:
        self.reads.append(uri)
        return self.inner.get(uri)

    def get_file(self, uri: str, path: Path, expected: ObjectInfo | None = None) -> dict[str, str]:
        self.reads.append(uri)
        return self.inner.get_file(uri, path, expected)

    def list(self, uri: str) -> Iterator[ObjectInfo]:
        return self.inner.list(uri)

    def head(self, uri: str) -> ObjectInfo | None:
        return self.inner.head(uri)


@pytest.fixture
def parts(tmp_path: Path) -> tuple[CountingStore, History]:
    inner = LocalStore(tmp_path / "s3")
    inner.put(URI, b"a,b\n1,2\n")
    return CountingStore(inner), History(tmp_path / "history.sqlite")


def test_an_unchanged_object_is_not_read_again(parts: tuple[CountingStore, History]) -> None:
    store, history = parts
    inputs = [("s3://bucket/data/", "S3Prefix")]
    (first,) = fingerprints(store, history, inputs)
    assert store.reads == [URI] and first.hash.startswith("sha256:") and first.size == 8
    recorded = {first.uri: first}
    store.reads.clear()
    for _ in range(3):
        assert data_changes(store, history, recorded, inputs) == []
        assert fingerprints(store, history, inputs) == [first]
    assert store.reads == []


def test_a_touched_object_is_hashed_once_and_compared_by_content(
    parts: tuple[CountingStore, History],
) -> None:
    store, history = parts
    inputs = [(URI, "S3Prefix")]
    (first,) = fingerprints(store, history, inputs)
    recorded = {first.uri: first}
    path = store.inner.local_path(URI)
    assert path is not None
    os.utime(path, (1_000_000, 1_000_000))  # new mtime, same bytes
    store.reads.clear()
    assert data_changes(store, history, recorded, inputs) == []
    assert data_changes(store, history, recorded, inputs) == []
    assert store.reads == [URI]  # hashed once for this version
    store.inner.put(URI, b"a,b\n9,9\n")  # same size, other bytes
    store.reads.clear()
    changed = data_changes(store, history, recorded, inputs)
    assert changed == [f"{URI} (changed)"] and store.reads == [URI]


def test_added_and_deleted_objects(parts: tuple[CountingStore, History]) -> None:
    store, history = parts
    inputs = [("s3://bucket/data/", "S3Prefix")]
    recorded = {f.uri: f for f in fingerprints(store, history, inputs)}
    store.inner.put("s3://bucket/data/part-1.csv", b"x")
    store.inner.delete(URI)
    assert data_changes(store, history, recorded, inputs) == [
        "s3://bucket/data/part-1.csv (added)",
        f"{URI} (deleted)",
    ]


def test_many_objects_are_looked_up_in_chunks(parts: tuple[CountingStore, History]) -> None:
    store, history = parts
    for i in range(1, 1201):  # more than one chunk of bound parameters
        store.inner.put(f"s3://bucket/many/part-{i:04d}.csv", str(i).encode())
    inputs = [("s3://bucket/many/", "S3Prefix")]
    first = fingerprints(store, history, inputs)
    assert len(first) == 1200 and len(store.reads) == 1200
    store.reads.clear()
    recorded = {f.uri: f for f in first}
    assert fingerprints(store, history, inputs) == first
    assert data_changes(store, history, recorded, inputs) == []
    assert store.reads == []
