"""S3Store: any S3 endpoint (AWS, SeaweedFS, MinIO) through boto3."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, TypeVar, cast

from sagepipe.config import Settings
from sagepipe.errors import ObjectNotFoundError, StorageError
from sagepipe.storage.aws import aws_errors, boto_session
from sagepipe.storage.base import ConditionFailedError, ObjectInfo, md5_chunks, parse_uri
from sagepipe.storage.digests import (
    check_download,
    confirm_upload,
    etag_parts,
    md5_etag,
    multipart_etag,
)
from sagepipe.storage.fast import (
    CRC32_HEADER,
    RawS3,
    RawUnavailable,
    Sent,
    crc32_b64,
    new_digest,
    range_start,
)
from sagepipe.storage.local import replaced_on_success

if TYPE_CHECKING:
    from botocore.credentials import Credentials
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)
PART_SIZE = 16 * 1024 * 1024
# Uploads in a row a server refuses on the lean path as unsupported (and boto3 then makes) before
# sagepipe stops trying it for uploads.
REFUSALS_TO_STOP = 3
PART_WORKERS = 8
# Part transfers in flight in this process, all files together: several large files at once
# would otherwise each start PART_WORKERS, and on a small machine the client and a local
# server then thrash (4 x 64 MiB on 2 cores: 7.1 s with 32 parts in flight, 4.1 s with 8).
PART_SLOTS = threading.BoundedSemaphore(PART_WORKERS)
_P = TypeVar("_P")


class _Condition(TypedDict, total=False):
    """S3's conditional-write parameters."""

    IfMatch: str
    IfNoneMatch: str


_HEADER = {"IfMatch": "If-Match", "IfNoneMatch": "If-None-Match"}


def _conditions(if_match: str | None, if_none_match: bool) -> _Condition:
    """boto3's parameters for a write conditional on what a listing showed."""
    if if_match:
        return {"IfMatch": f'"{if_match.strip(chr(34))}"'}
    return {"IfNoneMatch": "*"} if if_none_match else {}


@contextlib.contextmanager
def _precondition(what: str) -> Iterator[None]:
    """A 412 (the object is not as listed) becomes ConditionFailedError; the rest passes on."""
    from botocore.exceptions import ClientError

    try:
        yield
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if (
            exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412")
            or status == 412
        ):
            raise ConditionFailedError(f"{what}: changed since it was listed") from None
        raise


def _credentials(settings: Settings) -> Credentials | None:
    """Credentials for the lean request path: the settings' keys, else boto3's chain."""
    env = settings.env
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        from botocore.credentials import Credentials

        return Credentials(
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN")
        )
    with aws_errors("AWS credentials"):
        return boto_session(settings).get_credentials()


def _send_parts(path: Path, size: int, send: Callable[[int, bytes], _P]) -> list[_P]:
    """Send ``path``'s parts, PART_WORKERS at a time and at most PART_SLOTS in this process:
    ``send(part number, bytes)`` sends one part and returns what the join needs of it."""
    count = (size + PART_SIZE - 1) // PART_SIZE

    def one(index: int) -> _P:
        with PART_SLOTS:
            with path.open("rb") as fh:
                fh.seek(index * PART_SIZE)
                chunk = fh.read(PART_SIZE)
            return send(index + 1, chunk)

    with ThreadPoolExecutor(max_workers=PART_WORKERS) as pool:
        return list(pool.map(one, range(count)))


def s3_client(settings: Settings) -> S3Client:
    """An S3 client; third-party endpoints get checksums only when required."""
    from botocore.config import Config

    config = Config(max_pool_connections=64, retries={"max_attempts": 5, "mode": "standard"})
    if settings.endpoint_url:
        config = config.merge(
            Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                s3={"addressing_style": "path"},
            )
        )
    with aws_errors("S3 client"):
        return boto_session(settings).client(
            "s3", endpoint_url=settings.endpoint_url, config=config
        )


class S3Store:
    """An ObjectStore over an S3 endpoint.

    The boto3 client is made on first use: a sync that only lists and moves small objects
    goes through the lean request path and never pays for loading botocore's S3 model.
    """

    def __init__(self, client: S3Client | Callable[[], S3Client], raw: RawS3 | None = None) -> None:
        factory = callable(client) and not hasattr(client, "meta")
        self._client = None if factory else cast("S3Client", client)
        self._factory = cast("Callable[[], S3Client]", client) if factory else None
        self._raw = raw
        self._lock = threading.Lock()
        self._refused_uploads = 0  # lean-path uploads the server refused and boto3 then made

    @property
    def client(self) -> S3Client:
        """The boto3 S3 client."""
        if self._client is None:
            with self._lock:  # transfer threads may all ask at once
                if self._client is None:
                    assert self._factory is not None
                    self._client = self._factory()
        return self._client

    def _raw_uploads(self) -> RawS3 | None:
        """The lean path for uploads, unless this server refused it REFUSALS_TO_STOP times in a row
        (a server that rejects the CRC32 header, say): then every upload goes through boto3
        directly instead of trying twice."""
        return self._raw if self._refused_uploads < REFUSALS_TO_STOP else None

    def _lean_upload_made(self) -> None:
        """An upload went through on the lean path: only refusals in a row count."""
        if 0 < self._refused_uploads < REFUSALS_TO_STOP:
            self._refused_uploads = 0

    def _upload_refused(self, exc: RawUnavailable) -> None:
        """The server refused an upload on the lean path, and boto3 then made it. Only
        answers saying the request is not supported count (400, 501): throttling, server
        errors and expired credentials say nothing of the lean path."""
        if exc.status not in (400, 501) or self._raw is None:
            return
        with self._lock:
            self._refused_uploads += 1
            if self._refused_uploads == REFUSALS_TO_STOP:
                log.info(
                    "%s refused %d direct uploads (last: HTTP %s) that boto3 then made; "
                    "uploads go through boto3 from now on",
                    self._raw.endpoint,
                    REFUSALS_TO_STOP,
                    exc.status,
                )

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        """A store using the settings' endpoint, region and credentials."""
        endpoint = settings.endpoint_url or f"https://s3.{settings.region}.amazonaws.com"
        raw = RawS3(
            endpoint, settings.region, lambda: _credentials(settings), bool(settings.endpoint_url)
        )
        return cls(lambda: s3_client(settings), raw)

    def __repr__(self) -> str:
        return f"S3Store({self._raw.endpoint if self._raw else self.client.meta.endpoint_url!r})"

    def head(self, uri: str) -> ObjectInfo | None:
        bucket, key = parse_uri(uri)
        try:
            with aws_errors(uri):
                resp = self.client.head_object(Bucket=bucket, Key=key)
        except ObjectNotFoundError:
            return None
        return ObjectInfo(
            bucket,
            key,
            int(resp["ContentLength"]),
            resp.get("ETag", "").strip('"'),
            resp["LastModified"].timestamp(),
        )

    def get(self, uri: str) -> bytes:
        bucket, key = parse_uri(uri)
        with aws_errors(uri):
            return bytes(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def put(self, uri: str, data: bytes) -> None:
        bucket, key = parse_uri(uri)
        with aws_errors(uri):
            self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def put_file(
        self,
        uri: str,
        path: Path,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        mode: int | None = None,
    ) -> str:
        """Upload ``path``; the server checks every request's Content-MD5. Returns the ETag.

        The condition is S3's If-Match / If-None-Match (a 412 raises ConditionFailedError);
        ``mode`` is kept as the object's ``mode`` metadata (octal, as rclone writes it).
        """
        bucket, key = parse_uri(uri)
        size = path.stat().st_size
        cond = _conditions(if_match, if_none_match)
        meta = {"mode": f"{mode & 0o7777:o}"} if mode is not None else {}
        if size <= PART_SIZE:
            data = path.read_bytes()
            raw, refusal = self._raw_uploads(), None
            if raw is not None:
                headers: dict[str, str] = {_HEADER[k]: str(v) for k, v in cond.items()}
                headers.update({f"x-amz-meta-{k}": v for k, v in meta.items()})
                crc = crc32_b64(data)
                try:
                    sent = raw.put(bucket, key, data, {CRC32_HEADER: crc}, headers)
                except ConditionFailedError:
                    raise ConditionFailedError(f"{uri}: changed since it was listed") from None
                except RawUnavailable as exc:
                    refusal = exc  # boto3 below gives the error its proper message
                else:
                    confirm_upload(uri, data, sent, crc)
                    self._lean_upload_made()
                    return sent.etag or hashlib.md5(data, usedforsecurity=False).hexdigest()
            digest = hashlib.md5(data, usedforsecurity=False)
            content_md5 = base64.b64encode(digest.digest()).decode()
            with aws_errors(uri), _precondition(uri):
                resp = self.client.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=data,
                    ContentMD5=content_md5,
                    Metadata=meta,
                    **cond,
                )
            etag = str(resp.get("ETag", "")).strip('"')
            if etag and len(etag) == 32 and etag != digest.hexdigest():
                raise StorageError(
                    f"{uri}: upload corrupted (ETag {etag} != MD5 {digest.hexdigest()})"
                )
            if refusal is not None:
                self._upload_refused(refusal)
            return etag or digest.hexdigest()
        return self._put_multipart(uri, bucket, key, path, size, cond, meta)

    def _put_multipart(
        self,
        uri: str,
        bucket: str,
        key: str,
        path: Path,
        size: int,
        cond: _Condition,
        meta: dict[str, str],
    ) -> str:
        raw, refusal = self._raw_uploads(), None
        if raw is not None:
            try:
                etag = self._put_multipart_raw(raw, uri, bucket, key, path, size, cond, meta)
            except RawUnavailable as exc:
                refusal = exc
            else:
                self._lean_upload_made()
                return etag
        with aws_errors(uri):
            upload = self.client.create_multipart_upload(Bucket=bucket, Key=key, Metadata=meta)
        upload_id = upload["UploadId"]

        def send(number: int, chunk: bytes) -> tuple[str, bytes]:
            digest = hashlib.md5(chunk, usedforsecurity=False).digest()
            with aws_errors(uri):
                resp = self.client.upload_part(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=chunk,
                    ContentMD5=base64.b64encode(digest).decode(),
                )
            return resp["ETag"], digest

        try:
            sent = _send_parts(path, size, send)
            digests = [digest for _, digest in sent]
            parts: list[CompletedPartTypeDef] = [
                {"PartNumber": n, "ETag": etag} for n, (etag, _) in enumerate(sent, 1)
            ]
            with aws_errors(uri), _precondition(uri):
                self.client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    **cond,
                )
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise
        if refusal is not None:
            self._upload_refused(refusal)
        return multipart_etag(digests)

    def _put_multipart_raw(
        self,
        raw: RawS3,
        uri: str,
        bucket: str,
        key: str,
        path: Path,
        size: int,
        cond: _Condition,
        meta: dict[str, str],
    ) -> str:
        """The multipart upload over the lean path, each part with its CRC32 (S3's composite
        checksum); RawUnavailable before the join leaves the object untouched (the caller then
        goes through boto3)."""
        headers = {f"x-amz-meta-{k}": v for k, v in meta.items()}
        upload_id = raw.create_multipart(
            bucket, key, {"x-amz-checksum-algorithm": "CRC32", **headers}
        )

        def send(number: int, chunk: bytes) -> Sent:
            crc = crc32_b64(chunk)
            sent = raw.upload_part(bucket, key, upload_id, number, chunk, {CRC32_HEADER: crc})
            confirm_upload(f"{uri} (part {number})", chunk, sent, crc)
            return Sent(sent.etag, crc)

        try:
            parts = _send_parts(path, size, send)
            headers = {_HEADER[k]: str(v) for k, v in cond.items()}
            etag = raw.complete_multipart(bucket, key, upload_id, parts, headers)
        except ConditionFailedError:
            with contextlib.suppress(Exception):
                raw.abort_multipart(bucket, key, upload_id)
            raise ConditionFailedError(f"{uri}: changed since it was listed") from None
        except BaseException:
            with contextlib.suppress(Exception):
                raw.abort_multipart(bucket, key, upload_id)
            raise
        if etag:
            return etag
        head = self.head(uri)  # no ETag in the answer (S3 always gives one)
        return head.etag if head is not None else ""

    def get_file(self, uri: str, path: Path, expected: ObjectInfo | None = None) -> dict[str, str]:
        """Download through a temp file in the destination folder, verified, renamed into place.

        Returns the object's user metadata where the download saw it (whole-object GETs).
        """
        meta: dict[str, str] = {}
        bucket, key = parse_uri(uri)
        with replaced_on_success(path) as fd:
            if expected is None:
                with aws_errors(uri):
                    head = self.client.head_object(Bucket=bucket, Key=key)
                etag = str(head.get("ETag", "")).strip('"')
                size = int(head["ContentLength"])
            else:
                etag, size = expected.etag, expected.size
            if "-" in etag:  # multipart (parts of any size): by parts, as it was sent
                self._get_ranged(uri, bucket, key, fd, size, etag, meta)
            else:
                self._get_whole(uri, bucket, key, fd, meta, etag)
        return meta

    def _get_whole(
        self, uri: str, bucket: str, key: str, fd: int, meta: dict[str, str], etag: str
    ) -> None:
        """One GET, verified by the object's stored CRC32 where it has one (the GET is then
        conditional on ``etag``), else by its ETag."""
        if self._raw is not None:
            try:
                got = self._raw.get(bucket, key, fd, meta=meta, if_match=etag)
            except RawUnavailable:
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
            except ConditionFailedError:
                raise ConditionFailedError(f"{uri}: changed since it was listed") from None
            else:
                if got.crc:
                    check_download(uri, base64.b64encode(got.digest).decode(), got.checksum)
                else:
                    check_download(uri, got.digest.hex(), md5_etag(etag))
                return
        with aws_errors(uri):
            resp = self.client.get_object(Bucket=bucket, Key=key)
            meta.update(resp.get("Metadata", {}))
            actual = md5_chunks(resp["Body"].iter_chunks(1 << 20), lambda c: os.write(fd, c))
        check_download(uri, actual, md5_etag(etag))

    def _get_ranged(
        self,
        uri: str,
        bucket: str,
        key: str,
        fd: int,
        size: int,
        etag: str,
        meta: dict[str, str],
    ) -> None:
        """The parts in parallel (conditional on ``etag``), verified by the object's composite
        CRC32 where it has one, else by its multipart ETag. Where the server says how many
        parts there are, they go by part number (GET ?partNumber=N), so each is digested as it
        was sent even when parts differ in size (a server that does not say gets the count
        from the multipart ETag); else by byte ranges the size of part 1.
        ``meta`` receives the object's user metadata from the first part's answer."""
        part, parts, stored = 0, 0, ""
        if self._raw is not None:
            with contextlib.suppress(RawUnavailable):
                part, parts = self._raw.part_layout(bucket, key)
                stored = self._raw.stored_checksum(bucket, key)
        if not part:
            with aws_errors(uri):
                first = self.client.head_object(Bucket=bucket, Key=key, PartNumber=1)
            part, parts = int(first["ContentLength"]) or PART_SIZE, int(first.get("PartsCount", 0))
        if not parts and part < size and etag_parts(etag) > 1:
            # The server does not say how many parts, but it answered for part 1 alone (so it
            # serves parts by number), and the multipart ETag says: "<md5>-<parts>".
            parts = etag_parts(etag)
        by_number = parts > 0  # each part exactly as it was sent, whatever the sizes
        count = parts if by_number else (size + part - 1) // part
        crc = stored.endswith(f"-{count}")
        digests: list[bytes] = [b""] * count

        def fetch(index: int) -> None:
            start = index * part
            which = index + 1 if by_number else (start, min(size, start + part) - start)
            with PART_SLOTS:
                digests[index] = self._get_part(
                    uri, bucket, key, fd, etag, which, crc, meta if index == 0 else None
                )

        with ThreadPoolExecutor(max_workers=PART_WORKERS) as pool:
            list(pool.map(fetch, range(count)))
        if crc:
            check_download(uri, f"{crc32_b64(b''.join(digests))}-{count}", stored)
        else:
            check_download(uri, multipart_etag(digests), md5_etag(etag))

    def _get_part(
        self,
        uri: str,
        bucket: str,
        key: str,
        fd: int,
        etag: str,
        which: int | tuple[int, int],
        crc: bool,
        meta: dict[str, str] | None,
    ) -> bytes:
        """One part, ``which`` a part number or a (start, length) range, written in place;
        returns its CRC32 (4 bytes) or MD5 digest; ``meta`` receives the answer's metadata."""
        number, (start, length) = (which, (0, 0)) if isinstance(which, int) else (0, which)
        if self._raw is not None:
            try:
                got = self._raw.get(
                    bucket,
                    key,
                    fd,
                    start,
                    length or None,
                    meta=meta,
                    if_match=etag,
                    crc=crc,
                    part=number,
                )
            except RawUnavailable:
                pass
            except ConditionFailedError:
                raise ConditionFailedError(f"{uri}: changed since it was listed") from None
            else:
                return got.digest
        with aws_errors(uri):
            if number:
                resp = self.client.get_object(Bucket=bucket, Key=key, PartNumber=number)
                start = range_start(str(resp.get("ContentRange", "")))
                if start < 0:
                    raise StorageError(f"{uri}: part {number} came without its Content-Range")
            else:
                span = f"bytes={start}-{start + length - 1}"
                resp = self.client.get_object(Bucket=bucket, Key=key, Range=span)
            data = resp["Body"].read()
        if meta is not None:
            meta.update(resp.get("Metadata", {}))
        os.pwrite(fd, data, start)
        digest = new_digest(crc)
        digest.update(data)
        return digest.digest()

    def list(self, uri: str) -> Iterator[ObjectInfo]:
        bucket, prefix = parse_uri(uri)
        if self._raw is not None:
            pages = self._raw.pages(bucket, prefix)
            try:
                first = next(pages, None)
            except RawUnavailable:
                first = None
            else:
                if first is not None:
                    yield from first
                    for page in pages:
                        yield from page
                    return
        yield from self._list_boto(bucket, prefix, uri)

    def _list_boto(self, bucket: str, prefix: str, uri: str) -> Iterator[ObjectInfo]:
        with aws_errors(uri):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        bucket,
                        item["Key"],
                        int(item["Size"]),
                        item.get("ETag", "").strip('"'),
                        item["LastModified"].timestamp(),
                    )

    def delete(self, uri: str, *, if_match: str | None = None) -> None:
        bucket, key = parse_uri(uri)
        with aws_errors(uri), _precondition(uri):
            if if_match:
                self.client.delete_object(Bucket=bucket, Key=key, IfMatch=f'"{if_match}"')
            else:
                self.client.delete_object(Bucket=bucket, Key=key)

    def ensure_bucket(self, bucket: str) -> bool:
        try:
            with aws_errors(f"s3://{bucket}"):
                self.client.head_bucket(Bucket=bucket)
            return False
        except ObjectNotFoundError:
            pass
        region = self.client.meta.region_name
        with aws_errors(f"s3://{bucket}"):
            if region and region != "us-east-1":
                self.client.create_bucket(
                    Bucket=bucket,
                    CreateBucketConfiguration={
                        "LocationConstraint": cast("BucketLocationConstraintType", region)
                    },
                )
            else:
                self.client.create_bucket(Bucket=bucket)
        return True

    def local_path(self, uri: str) -> Path | None:
        return None
