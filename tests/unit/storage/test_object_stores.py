"""One suite over every ObjectStore: the local directory and S3 (SeaweedFS)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sagepipe.config import Settings
from sagepipe.errors import ObjectNotFoundError, StorageError, UnsafeKeyError
from sagepipe.storage import LocalStore, ObjectStore, join_uri, parse_uri, safe_key
from sagepipe.storage.s3 import S3Store
from tests.servers import SeaweedFS

_COUNTER = iter(range(10_000))


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ObjectStore, str]]:
    bucket = f"suite-{next(_COUNTER)}"
    if request.param == "local":
        yield LocalStore(tmp_path / "s3"), bucket
        return
    seaweed: SeaweedFS = request.getfixturevalue("seaweed")
    settings = Settings.from_env(cwd=tmp_path, environ=seaweed.env())
    yield S3Store.from_settings(settings), bucket


def test_put_get_head_list_delete(store: tuple[ObjectStore, str], tmp_path: Path) -> None:
    s, bucket = store
    assert s.ensure_bucket(bucket) is True
    assert s.ensure_bucket(bucket) is False
    uri = f"s3://{bucket}/a/b/c.txt"
    assert s.head(uri) is None
    s.put(uri, b"hello")
    info = s.head(uri)
    assert info is not None and info.size == 5
    assert info.etag == "5d41402abc4b2a76b9719d911017c592"
    assert s.get(uri) == b"hello"
    s.put(f"s3://{bucket}/a/d.txt", b"x")
    s.put(f"s3://{bucket}/a/empty/", b"")
    keys = sorted(i.key for i in s.list(f"s3://{bucket}/a/"))
    assert keys == ["a/b/c.txt", "a/d.txt", "a/empty/"]
    assert [i.key for i in s.list(f"s3://{bucket}/a/b")] == ["a/b/c.txt"]
    target = tmp_path / "dl" / "c.txt"
    s.get_file(uri, target)
    assert target.read_bytes() == b"hello"
    src = tmp_path / "up.bin"
    src.write_bytes(b"\0" * 1000)
    s.put_file(f"s3://{bucket}/up.bin", src)
    assert s.get(f"s3://{bucket}/up.bin") == b"\0" * 1000
    s.delete(uri)
    assert s.head(uri) is None
    s.delete(uri)  # deleting twice is fine


def test_missing_object_raises_not_found(store: tuple[ObjectStore, str], tmp_path: Path) -> None:
    s, bucket = store
    s.ensure_bucket(bucket)
    with pytest.raises(ObjectNotFoundError):
        s.get(f"s3://{bucket}/nope")
    with pytest.raises(ObjectNotFoundError):
        s.get_file(f"s3://{bucket}/nope", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_overwrite_replaces_content(store: tuple[ObjectStore, str]) -> None:
    s, bucket = store
    s.ensure_bucket(bucket)
    s.put(f"s3://{bucket}/k", b"one")
    s.put(f"s3://{bucket}/k", b"two!")
    assert s.get(f"s3://{bucket}/k") == b"two!"


def test_local_store_refuses_escaping_keys(tmp_path: Path) -> None:
    s = LocalStore(tmp_path / "root")
    for key in ("../x", "a/../../x", "/etc/x", "a\\..\\b", "a\x00b"):
        with pytest.raises((UnsafeKeyError, StorageError)):
            s.put(f"s3://bkt/{key}", b"x")
    assert not (tmp_path / "x").exists()
    assert not any((tmp_path / "root").rglob("x"))


def test_local_store_writes_atomically(tmp_path: Path) -> None:
    s = LocalStore(tmp_path / "root")
    s.put("s3://bkt/k", b"data")
    leftovers = [p.name for p in (tmp_path / "root" / "bkt").iterdir()]
    assert leftovers == ["k"]


@pytest.mark.parametrize("bucket", ["b", "Upper", "under_score", "-dash", "a..b", "192.168.0.1"])
def test_local_store_refuses_bucket_names_s3_refuses(tmp_path: Path, bucket: str) -> None:
    s = LocalStore(tmp_path / "root")
    with pytest.raises(StorageError, match="not valid on S3"):
        s.put(f"s3://{bucket}/k", b"x")
    with pytest.raises(StorageError, match="not valid on S3"):
        s.ensure_bucket(bucket)
    assert not (tmp_path / "root").exists()


def test_uri_helpers() -> None:
    assert parse_uri("s3://b/k/x") == ("b", "k/x")
    assert join_uri("s3://b/k/", "x", "/y") == "s3://b/k/x/y"
    with pytest.raises(StorageError):
        parse_uri("/local/path")
    assert safe_key("a/b.txt") == "a/b.txt"
    with pytest.raises(UnsafeKeyError):
        safe_key("C:/x")
