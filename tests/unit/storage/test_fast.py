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

    do_GET = do_PUT = do_HEAD = _answer

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
