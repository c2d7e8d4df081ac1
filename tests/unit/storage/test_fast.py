"""The lean S3 request path falls back to boto3 on anything it does not expect.

Each test gives S3Store a lean path that cannot succeed (a closed port, a server answering
garbage, no credentials) and a boto3 client on a real SeaweedFS server: every operation must
still succeed, or fail with boto3's properly translated one-line error.
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagepipe.config import Settings
from sagepipe.errors import ObjectNotFoundError, StorageError
from sagepipe.storage.base import ConditionFailedError
from sagepipe.storage.fast import RawS3, RawUnavailable
from sagepipe.storage.s3 import PART_SIZE, S3Store, _credentials, s3_client
from tests.servers import SeaweedFS

_COUNTER = iter(range(10_000))


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class _Garbage(http.server.BaseHTTPRequestHandler):
    """Answers 200 with a body no S3 client can read."""

    def _answer(self) -> None:
        body = b"<<not xml"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def garbage_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _store(settings: Settings, raw_endpoint: str) -> S3Store:
    raw = RawS3(raw_endpoint, settings.region, lambda: _credentials(settings), True)
    return S3Store(lambda: s3_client(settings), raw)


@pytest.fixture
def settings(seaweed: SeaweedFS, tmp_path: Path) -> Settings:
    return Settings.from_env(cwd=tmp_path, environ=seaweed.env())


def _exercise(store: S3Store, tmp_path: Path) -> None:
    bucket = f"fast-{next(_COUNTER)}"
    store.ensure_bucket(bucket)
    small = tmp_path / "small.bin"
    small.write_bytes(b"abc" * 1000)
    store.put_file(f"s3://{bucket}/d/small.bin", small)
    assert [i.key for i in store.list(f"s3://{bucket}/d/")] == ["d/small.bin"]
    store.get_file(f"s3://{bucket}/d/small.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == small.read_bytes()
    with pytest.raises(ObjectNotFoundError):
        store.get_file(f"s3://{bucket}/d/missing.bin", tmp_path / "never.bin")
    assert not (tmp_path / "never.bin").exists()


def test_the_lean_path_itself_works(settings: Settings, tmp_path: Path) -> None:
    assert settings.endpoint_url
    _exercise(_store(settings, settings.endpoint_url), tmp_path)


def test_a_closed_port_falls_back_to_boto3(settings: Settings, tmp_path: Path) -> None:
    _exercise(_store(settings, _closed_port()), tmp_path)


def test_unreadable_answers_fall_back_to_boto3(
    settings: Settings, tmp_path: Path, garbage_server: str
) -> None:
    store = _store(settings, garbage_server)
    bucket = f"fast-{next(_COUNTER)}"
    store.ensure_bucket(bucket)
    store.put(f"s3://{bucket}/k", b"v")
    assert [i.key for i in store.list(f"s3://{bucket}/")] == ["k"]  # garbage XML -> boto3


def test_a_multipart_download_falls_back_for_the_part_size(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings.endpoint_url
    bucket = f"fast-{next(_COUNTER)}"
    good = _store(settings, settings.endpoint_url)
    good.ensure_bucket(bucket)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (PART_SIZE + 1024))
    etag = good.put_file(f"s3://{bucket}/big.bin", big)
    assert etag.endswith("-2")
    _store(settings, _closed_port()).get_file(f"s3://{bucket}/big.bin", tmp_path / "big2.bin")
    assert (tmp_path / "big2.bin").stat().st_size == big.stat().st_size


def test_a_multipart_upload_over_the_lean_path(settings: Settings, tmp_path: Path) -> None:
    """Parts, the join, the conditions and the object's mode metadata, without boto3."""
    assert settings.endpoint_url
    store = _store(settings, settings.endpoint_url)
    bucket = f"fast-{next(_COUNTER)}"
    store.ensure_bucket(bucket)
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * ((2 * PART_SIZE + 4096) // 256))
    uri = f"s3://{bucket}/big.bin"
    store = _store(settings, settings.endpoint_url)  # a fresh one: ensure_bucket used boto3
    etag = store.put_file(uri, big, if_none_match=True, mode=0o755)
    assert store._client is None  # boto3 never loaded
    assert etag.endswith("-3") and store.head(uri) is not None
    store.get_file(uri, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()
    with pytest.raises(ConditionFailedError):  # the key exists now
        store.put_file(uri, big, if_none_match=True)
    with pytest.raises(ConditionFailedError):  # it is not the object the plan saw
        store.put_file(uri, big, if_match="0" * 32)
    assert store.put_file(uri, big, if_match=etag) == etag
    uploads = store.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert uploads == []  # refused uploads were aborted, not left behind


def test_a_multipart_upload_falls_back_on_garbage(
    settings: Settings, tmp_path: Path, garbage_server: str
) -> None:
    store = _store(settings, garbage_server)
    bucket = f"fast-{next(_COUNTER)}"
    store.ensure_bucket(bucket)
    big = tmp_path / "big.bin"
    big.write_bytes(b"y" * (PART_SIZE + 10))
    assert store.put_file(f"s3://{bucket}/big.bin", big).endswith("-2")
    assert (
        store.client.head_object(Bucket=bucket, Key="big.bin")["ContentLength"]
        == big.stat().st_size
    )


class _ErrorInBody(http.server.BaseHTTPRequestHandler):
    """Answers 200 to every request; the join's answer is an S3 error document."""

    def _answer(self) -> None:
        if self.command == "POST" and "uploadId=" in self.path:
            body = b"<Error><Code>InternalError</Code><Message>try again</Message></Error>"
        elif self.command == "POST":
            body = b"<InitiateMultipartUploadResult><UploadId>u1</UploadId></InitiateMultipartUploadResult>"
        else:
            body = b""
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("ETag", '"abc"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


def test_a_join_answered_200_with_an_error_is_no_success(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ErrorInBody)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        from botocore.credentials import Credentials

        raw = RawS3(
            f"http://127.0.0.1:{server.server_address[1]}",
            "us-east-1",
            lambda: Credentials("a", "b"),
            True,
        )
        upload = raw.create_multipart("b", "k", {})
        assert upload == "u1"
        part = raw.upload_part(
            "b", "k", upload, 1, b"data", {"Content-MD5": "jXd/OF09/siBXSD3SWAm3A=="}
        )
        with pytest.raises(RawUnavailable, match="InternalError"):
            raw.complete_multipart("b", "k", upload, [part], {})
    finally:
        server.shutdown()
        server.server_close()


def test_no_credentials_go_to_boto3_for_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = {
        "AWS_ENDPOINT_URL": _closed_port(),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
    }
    for key, value in environ.items():  # boto3 reads the process environment too
        monkeypatch.setenv(key, value)
    settings = Settings.from_env(cwd=tmp_path, environ=environ)
    raw = RawS3(str(settings.endpoint_url), settings.region, lambda: None, True)
    with pytest.raises(RawUnavailable):
        next(raw.pages("b", ""))
    with pytest.raises(StorageError, match="no AWS credentials"):
        list(S3Store(lambda: s3_client(settings), raw).list("s3://bkt/"))
