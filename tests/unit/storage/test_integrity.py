"""Transfers are verified end to end: a byte changed on the wire never lands unnoticed.

A proxy between the lean request path and a real SeaweedFS server flips one byte of every
body going one way; the store must refuse the download, or get the upload stored intact
(the server refuses a body whose CRC32 does not match, and boto3, talking to the server
directly, sends it again). Objects with and without a stored checksum, single and multipart.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import http.server
import os
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagepipe.config import Settings
from sagepipe.errors import StorageError
from sagepipe.storage.base import ConditionFailedError, ObjectInfo
from sagepipe.storage.digests import confirm_upload
from sagepipe.storage.fast import RawS3, Sent
from sagepipe.storage.s3 import PART_SIZE, S3Store, _credentials, s3_client
from tests.servers import SEAWEED_ENDPOINT_VAR, SeaweedFS
from tests.unprivileged import rerun_as_ordinary_user

_COUNTER = iter(range(10_000))


class _Flipper(http.server.BaseHTTPRequestHandler):
    """Forwards to the server; flips the first byte of request or answer bodies."""

    protocol_version = "HTTP/1.1"
    target = ""  # host:port of the server
    endpoint = ""  # the proxy's own URL
    flip = ""  # "get": answers to GETs, "put": bodies of PUTs, "refuse": checksum headers,
    # "nocount": the parts count header of answers
    flipped = 0
    busy = 0  # PUTs to answer 503 in "busy" mode
    puts = 0  # PUTs forwarded to the server

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.flip == "busy" and self.command == "PUT" and type(self).busy > 0:
            type(self).busy -= 1  # a server throttling for a moment: says nothing of the path
            self._error(503, "SlowDown")
            return
        if self.command == "PUT":
            type(self).puts += 1
        if self.flip == "refuse" and any(
            h.lower().startswith("x-amz-checksum") for h in self.headers
        ):
            self._error(400, "InvalidRequest")  # a server that does not take S3's checksums
            return
        if self.flip == "put" and self.command == "PUT" and body:
            body = bytes([body[0] ^ 1]) + body[1:]
            type(self).flipped += 1
        host, port = self.target.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request(self.command, self.path, body=body or None, headers=dict(self.headers))
        resp = conn.getresponse()
        data = resp.read()
        if self.flip == "get" and self.command == "GET" and data:
            data = bytes([data[0] ^ 1]) + data[1:]
            type(self).flipped += 1
        self.send_response(resp.status)
        for name, value in resp.getheaders():
            if name.lower() in ("content-length", "transfer-encoding", "connection"):
                continue
            if self.flip == "nocount" and name.lower() == "x-amz-mp-parts-count":
                continue  # a server that does not say how many parts an object has
            self.send_header(name, value)
        length = resp.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(data)))  # a HEAD's is the object's
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    def _error(self, status: int, code: str) -> None:
        """Answer with an S3 error instead of forwarding (counted in ``flipped``)."""
        type(self).flipped += 1
        answer = f"<Error><Code>{code}</Code></Error>".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def settings(seaweed: SeaweedFS, tmp_path: Path) -> Settings:
    return Settings.from_env(cwd=tmp_path, environ=seaweed.env())


@pytest.fixture
def flipper(seaweed: SeaweedFS) -> Iterator[type[_Flipper]]:
    handler = type("Flipper", (_Flipper,), {"target": seaweed.endpoint.split("//")[1]})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    yield handler
    server.shutdown()
    server.server_close()


def _store(settings: Settings, endpoint: str) -> S3Store:
    raw = RawS3(endpoint, settings.region, lambda: _credentials(settings), True)
    return S3Store(lambda: s3_client(settings), raw)


def _bucket(settings: Settings) -> tuple[S3Store, str]:
    assert settings.endpoint_url
    store = _store(settings, settings.endpoint_url)
    bucket = f"integrity-{next(_COUNTER)}"
    store.ensure_bucket(bucket)
    return store, bucket


@pytest.mark.parametrize("size", [5000, 2 * PART_SIZE + 77], ids=["single", "multipart"])
def test_a_flipped_byte_in_a_download_is_refused(
    settings: Settings, flipper: type[_Flipper], tmp_path: Path, size: int
) -> None:
    store, bucket = _bucket(settings)
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    uri = f"s3://{bucket}/obj.bin"
    store.put_file(uri, src)  # through sagepipe: the object keeps a CRC32
    assert store.client.head_object(Bucket=bucket, Key="obj.bin", ChecksumMode="ENABLED").get(
        "ChecksumCRC32"
    )
    flipper.flip = "get"
    bad = _store(settings, flipper.endpoint)
    with pytest.raises(StorageError, match="download corrupted"):
        bad.get_file(uri, tmp_path / "back.bin")
    assert flipper.flipped > 0
    assert not (tmp_path / "back.bin").exists()  # nothing half-right left behind
    store.get_file(uri, tmp_path / "good.bin")
    assert (tmp_path / "good.bin").read_bytes() == src.read_bytes()


def test_a_flipped_byte_is_refused_without_a_stored_checksum(
    settings: Settings, flipper: type[_Flipper], tmp_path: Path
) -> None:
    """An object put by another tool without a checksum is checked against its ETag."""
    store, bucket = _bucket(settings)
    store.client.put_object(Bucket=bucket, Key="plain.bin", Body=b"hello world" * 100)
    flipper.flip = "get"
    bad = _store(settings, flipper.endpoint)
    with pytest.raises(StorageError, match="download corrupted"):
        bad.get_file(f"s3://{bucket}/plain.bin", tmp_path / "back.bin")


@pytest.mark.parametrize("size", [5000, PART_SIZE + 4096], ids=["single", "multipart"])
def test_a_flipped_byte_in_an_upload_never_lands(
    settings: Settings, flipper: type[_Flipper], tmp_path: Path, size: int
) -> None:
    store, bucket = _bucket(settings)
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(reversed(range(256))) * (size // 256 + 1))
    flipper.flip = "put"
    bad = _store(settings, flipper.endpoint)
    bad.put_file(f"s3://{bucket}/up.bin", src)  # refused by the server, sent again by boto3
    assert flipper.flipped > 0
    body = store.client.get_object(Bucket=bucket, Key="up.bin")["Body"].read()
    assert body == src.read_bytes()


def test_a_multipart_object_smaller_than_a_part_downloads(
    settings: Settings, tmp_path: Path
) -> None:
    """Another tool's multipart object with 5 MiB parts (12 MiB in all): verified part by
    part, not compared as a whole with its multipart ETag."""
    store, bucket = _bucket(settings)
    client = store.client
    upload = client.create_multipart_upload(Bucket=bucket, Key="mp.bin")["UploadId"]
    chunks = [bytes([i]) * (5 << 20) for i in (1, 2)] + [b"\3" * (2 << 20)]
    parts = []
    for number, chunk in enumerate(chunks, 1):
        resp = client.upload_part(
            Bucket=bucket, Key="mp.bin", UploadId=upload, PartNumber=number, Body=chunk
        )
        parts.append({"PartNumber": number, "ETag": resp["ETag"]})
    client.complete_multipart_upload(
        Bucket=bucket, Key="mp.bin", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    store.get_file(f"s3://{bucket}/mp.bin", tmp_path / "mp.bin")
    assert (tmp_path / "mp.bin").read_bytes() == b"".join(chunks)


def _uneven(store: S3Store, bucket: str, key: str, crc: bool) -> bytes:
    """A multipart object of parts of 5, 7 and 3 MiB (as a tool with adaptive parts makes),
    with a composite CRC32 or none."""
    client = store.client
    extra = {"ChecksumAlgorithm": "CRC32"} if crc else {}
    upload = client.create_multipart_upload(Bucket=bucket, Key=key, **extra)
    chunks = [bytes([i]) * (n << 20) for i, n in ((1, 5), (2, 7), (3, 3))]
    parts = []
    for number, chunk in enumerate(chunks, 1):
        sums = {"ChecksumCRC32": _crc(chunk)} if crc else {}
        resp = client.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=chunk,
            **sums,
        )
        parts.append({"PartNumber": number, "ETag": resp["ETag"], **sums})
    client.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    return b"".join(chunks)


@pytest.mark.parametrize("crc", [False, True], ids=["etag", "composite-crc32"])
def test_parts_of_several_sizes_are_verified_part_by_part(
    settings: Settings, flipper: type[_Flipper], tmp_path: Path, crc: bool
) -> None:
    """Part boundaries come from the parts themselves (GET ?partNumber=N), not from the size
    of part 1: the download is whole and verified, and a flipped byte is still caught."""
    store, bucket = _bucket(settings)
    data = _uneven(store, bucket, "uneven.bin", crc)
    store.get_file(f"s3://{bucket}/uneven.bin", tmp_path / "uneven.bin")
    assert (tmp_path / "uneven.bin").read_bytes() == data
    flipper.flip = "get"
    bad = _store(settings, flipper.endpoint)
    with pytest.raises(StorageError, match="download corrupted"):
        bad.get_file(f"s3://{bucket}/uneven.bin", tmp_path / "bad.bin")


@pytest.mark.parametrize("crc", [False, True], ids=["etag", "composite-crc32"])
def test_parts_of_several_sizes_without_a_parts_count_go_by_the_etags_count(
    settings: Settings, flipper: type[_Flipper], tmp_path: Path, crc: bool
) -> None:
    """A server that gives no x-amz-mp-parts-count: the listed ETag (<md5>-3) says there are
    three parts, so they still go by part number rather than by ranges the size of part 1."""
    store, bucket = _bucket(settings)
    data = _uneven(store, bucket, "uneven.bin", crc)
    flipper.flip = "nocount"
    quiet = _store(settings, flipper.endpoint)
    quiet.get_file(f"s3://{bucket}/uneven.bin", tmp_path / "uneven.bin")
    assert (tmp_path / "uneven.bin").read_bytes() == data


def test_an_object_replaced_since_the_listing_is_a_conflict(
    settings: Settings, tmp_path: Path
) -> None:
    store, bucket = _bucket(settings)
    src = tmp_path / "src.bin"
    src.write_bytes(b"first")
    uri = f"s3://{bucket}/k"
    etag = store.put_file(uri, src)
    listed = ObjectInfo(bucket, "k", 5, etag, 0.0)
    src.write_bytes(b"other")
    store.put_file(uri, src)
    with pytest.raises(ConditionFailedError):
        store.get_file(uri, tmp_path / "back.bin", listed)
    assert not (tmp_path / "back.bin").exists()


def _crc(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_an_unconfirmed_checksum_falls_back_to_the_etag() -> None:
    """A server that does not confirm the CRC32 is checked by its ETag, the MD5 of what it
    stored; a server confirming another checksum stored other bytes."""
    data = b"payload"
    md5 = hashlib.md5(data).hexdigest()
    confirm_upload("s3://b/k", data, Sent(md5, _crc(data)), _crc(data))  # confirmed
    confirm_upload("s3://b/k", data, Sent(f'"{md5}"', ""), _crc(data))  # MD5 ETag matches
    confirm_upload("s3://b/k", data, Sent("kms-etag-not-md5", ""), _crc(data))  # nothing to check
    with pytest.raises(StorageError, match="upload corrupted"):
        confirm_upload("s3://b/k", data, Sent(hashlib.md5(b"other").hexdigest(), ""), _crc(data))
    with pytest.raises(StorageError, match="upload corrupted"):
        confirm_upload("s3://b/k", data, Sent(md5, _crc(b"other")), _crc(data))


def test_a_server_refusing_the_checksum_header_gets_boto3_uploads_after_three(
    settings: Settings, flipper: type[_Flipper], tmp_path: Path
) -> None:
    _, bucket = _bucket(settings)
    flipper.flip = "refuse"
    store = _store(settings, flipper.endpoint)  # lean path through the proxy, boto3 direct
    sizes = [1000 + i for i in range(6)] + [PART_SIZE + 5]
    for i, size in enumerate(sizes):
        src = tmp_path / f"f{i}"
        src.write_bytes(os.urandom(size))
        store.put_file(f"s3://{bucket}/f{i}", src)
        assert store.get(f"s3://{bucket}/f{i}") == src.read_bytes()
    assert flipper.flipped == 3  # tried three times, then straight to boto3


def test_a_busy_server_does_not_turn_the_lean_uploads_off(
    settings: Settings, flipper: type[_Flipper], tmp_path: Path
) -> None:
    _, bucket = _bucket(settings)
    flipper.flip, flipper.busy = "busy", 3  # three 503s: boto3 (direct) makes those uploads
    store = _store(settings, flipper.endpoint)
    for i in range(6):
        src = tmp_path / f"f{i}"
        src.write_bytes(os.urandom(1000 + i))
        store.put_file(f"s3://{bucket}/f{i}", src)
        assert store.get(f"s3://{bucket}/f{i}") == src.read_bytes()
    assert flipper.flipped == 3 and flipper.puts == 3  # the last three went the lean way


def test_the_same_holds_for_an_ordinary_user(seaweed: SeaweedFS) -> None:
    """This module again as uid 1000, against this run's SeaweedFS."""
    if os.geteuid() != 0:
        pytest.skip("already an ordinary user")
    rerun_as_ordinary_user([__file__], {SEAWEED_ENDPOINT_VAR: seaweed.endpoint})
