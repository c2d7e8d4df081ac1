"""A lean S3 path for the hot requests of a sync: listing pages, small GETs and PUTs.

Requests are signed with botocore's S3 SigV4 signer and sent with urllib3; listings are parsed
with ElementTree. botocore's full request pipeline (validation, hooks, the modelled XML parser)
costs a few milliseconds per request in Python, which dominates syncing many small files.
Any answer this path does not expect raises RawUnavailable, and the caller repeats the request
through boto3, which reports errors properly.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import urllib.parse
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from sagepipe.records import record
from sagepipe.storage.base import ConditionFailedError, ObjectInfo

if TYPE_CHECKING:
    from botocore.credentials import Credentials
    from urllib3 import BaseHTTPResponse


class _PayloadConfig:
    """What botocore's S3 signer reads from a client config: sign no payload hash."""

    s3 = {"payload_signing_enabled": False}


_UNSIGNED_PAYLOAD = _PayloadConfig()


CRC32_HEADER = "x-amz-checksum-crc32"
_BUFFER = 1 << 20
_buffers = threading.local()


class RawUnavailable(Exception):
    """This request must go through boto3. ``status``: the server's HTTP status, where it
    answered with an error."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def crc32_b64(data: bytes | memoryview, crc: int = 0) -> str:
    """S3's form of a CRC32 checksum: the big-endian 4 bytes, base64."""
    return base64.b64encode(zlib.crc32(data, crc).to_bytes(4, "big")).decode()


@record(frozen=False)
class Received:
    """What a GET wrote: its digest and the checksum the server keeps for the object."""

    digest: bytes  # of what was written: the CRC32 (4 bytes, big-endian) or the MD5
    crc: bool  # which of the two
    checksum: str  # the answer's x-amz-checksum-crc32 ('' when none came)


def new_digest(crc: bool) -> _Crc32 | hashlib._Hash:
    """A running CRC32 or MD5 (``update``, ``digest``): S3 part digests either way."""
    return _Crc32() if crc else hashlib.md5(usedforsecurity=False)


@record(frozen=False)
class Sent:
    """The answer to a PUT of an object or a part."""

    etag: str  # as the server gave it (quoted for parts)
    checksum: str  # the x-amz-checksum-crc32 it confirmed ('' when it confirmed none)


class RawS3:
    """Signed S3 requests over a urllib3 pool."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        credentials: Callable[[], Credentials | None],
        path_style: bool,
    ) -> None:
        import urllib3

        self.endpoint = endpoint.rstrip("/")
        self.region = region or "us-east-1"
        self._credentials_factory = credentials
        self._credentials: Credentials | None = None
        self.path_style = path_style
        self.http = urllib3.PoolManager(maxsize=64, block=False)

    def _url(self, bucket: str, key: str = "", query: dict[str, str] | None = None) -> str:
        path = "/" + urllib.parse.quote(key, safe="/~") if key else "/"
        if self.path_style or "." in bucket:
            url = f"{self.endpoint}/{bucket}{path}"
        else:
            scheme, _, host = self.endpoint.partition("://")
            url = f"{scheme}://{bucket}.{host}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(sorted(query.items()), quote_via=urllib.parse.quote)
        return url

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes = b"",
        preload: bool = True,
    ) -> BaseHTTPResponse:
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from urllib3.exceptions import HTTPError

        if self._credentials is None:
            self._credentials = self._credentials_factory()
            if self._credentials is None:
                raise RawUnavailable("no credentials")  # boto3 reports it properly
        request = AWSRequest(method=method, url=url, headers=headers, data=body)
        if body and (CRC32_HEADER in headers or "Content-MD5" in headers):
            # the signed checksum protects the body; no SHA-256 of it
            request.context["client_config"] = _UNSIGNED_PAYLOAD
        S3SigV4Auth(self._credentials.get_frozen_credentials(), "s3", self.region).add_auth(request)
        try:
            resp = self.http.request(
                method,
                url,
                headers=dict(request.headers.items()),
                body=body or None,
                preload_content=preload,
                retries=2,
                redirect=False,
            )
        except (HTTPError, OSError) as exc:  # connection trouble: boto3 retries and reports it
            raise RawUnavailable(str(exc)) from exc
        if not 200 <= resp.status < 300:
            if not preload:
                resp.release_conn()
            if resp.status == 412:
                raise ConditionFailedError("the object changed since it was listed")
            raise RawUnavailable(f"HTTP {resp.status}", resp.status)
        return resp

    def pages(self, bucket: str, prefix: str) -> Iterator[list[ObjectInfo]]:
        """ListObjectsV2 pages under ``prefix``."""
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": prefix, "encoding-type": "url", "max-keys": "1000"}
            if token:
                query["continuation-token"] = token
            resp = self._send("GET", self._url(bucket, query=query), {})
            try:
                root = ET.fromstring(resp.data)
            except ET.ParseError as exc:
                raise RawUnavailable(f"unreadable listing: {exc}") from exc
            ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
            page = []
            for item in root.iter(f"{ns}Contents"):
                key = urllib.parse.unquote_plus(item.findtext(f"{ns}Key") or "")
                stamp = (item.findtext(f"{ns}LastModified") or "").replace("Z", "+00:00")
                page.append(
                    ObjectInfo(
                        bucket,
                        key,
                        int(item.findtext(f"{ns}Size") or 0),
                        (item.findtext(f"{ns}ETag") or "").strip('"'),
                        datetime.fromisoformat(stamp).timestamp() if stamp else 0.0,
                    )
                )
            yield page
            token = root.findtext(f"{ns}NextContinuationToken")
            if root.findtext(f"{ns}IsTruncated") != "true" or not token:
                return

    def get(
        self,
        bucket: str,
        key: str,
        fd: int,
        offset: int = 0,
        length: int | None = None,
        *,
        meta: dict[str, str] | None = None,
        if_match: str = "",
        crc: bool | None = None,
        part: int = 0,
    ) -> Received:
        """Write the object (or a byte range) to ``fd`` at ``offset``, digesting it on the way.

        ``part`` (from 1) fetches that part of a multipart object, written where its answer's
        Content-Range places it.

        ``crc``: True computes the CRC32, False the MD5, None decides by the answer: the CRC32
        when the server keeps a whole-object CRC32 for it (cheaper than MD5 by ten times),
        else the MD5. ``if_match`` (an ETag) makes a changed object a ConditionFailedError.
        ``meta``, when given, receives the object's user metadata (``x-amz-meta-*``).
        """
        headers = {"x-amz-checksum-mode": "ENABLED"}
        if if_match:
            headers["If-Match"] = f'"{if_match}"'
        if length is not None:
            headers["Range"] = f"bytes={offset}-{offset + length - 1}"
        from http.client import HTTPException

        from urllib3.exceptions import HTTPError

        query = {"partNumber": str(part)} if part else None
        resp = self._send("GET", self._url(bucket, key, query), headers, preload=False)
        if part:
            offset = range_start(str(resp.headers.get("Content-Range", "")))
            if offset < 0:
                resp.release_conn()
                raise RawUnavailable("no Content-Range for the part")
        checksum = str(resp.headers.get(CRC32_HEADER, ""))
        if meta is not None:
            for name, value in resp.headers.items():
                if name.lower().startswith("x-amz-meta-"):
                    meta[name.lower()[len("x-amz-meta-") :]] = value
        if crc is None:
            crc = bool(checksum) and "-" not in checksum and length is None and not part
        digest = new_digest(crc)
        try:
            _drain(resp, fd, offset, digest.update)
        except (HTTPError, HTTPException, OSError) as exc:  # broken: boto3 fetches it again
            resp.close()
            raise RawUnavailable(str(exc)) from exc
        finally:
            resp.release_conn()
        return Received(digest.digest(), crc, checksum)

    def part_layout(self, bucket: str, key: str) -> tuple[int, int]:
        """The size of part 1 of a multipart object and its number of parts (0 when the server
        does not say), from HEAD ?partNumber=1."""
        resp = self._send("HEAD", self._url(bucket, key, {"partNumber": "1"}), {})
        try:
            size = int(resp.headers["Content-Length"])
        except (KeyError, ValueError) as exc:
            raise RawUnavailable("no Content-Length") from exc
        parts = str(resp.headers.get("x-amz-mp-parts-count", ""))
        return size, int(parts) if parts.isdigit() else 0

    def stored_checksum(self, bucket: str, key: str) -> str:
        """The CRC32 the server keeps for an object ('' when none): for a multipart object,
        S3's composite form ``<CRC32 of the parts' CRC32s>-<parts>``."""
        resp = self._send("HEAD", self._url(bucket, key), {"x-amz-checksum-mode": "ENABLED"})
        kind = str(resp.headers.get("x-amz-checksum-type", "COMPOSITE"))
        return str(resp.headers.get(CRC32_HEADER, "")) if kind == "COMPOSITE" else ""

    def create_multipart(self, bucket: str, key: str, extra: dict[str, str]) -> str:
        """Start a multipart upload (``extra``: x-amz-meta-* headers); returns its UploadId."""
        resp = self._send("POST", self._url(bucket, key, {"uploads": ""}), dict(extra))
        upload_id = _element_text(_xml_root(resp.data), "UploadId")
        if not upload_id:
            raise RawUnavailable("no UploadId in the answer")
        return upload_id

    def upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, data: bytes, check: dict[str, str]
    ) -> Sent:
        """PUT one part with its checksum header (``check``: Content-MD5 or the CRC32, which
        the server verifies)."""
        query = {"partNumber": str(number), "uploadId": upload_id}
        resp = self._send("PUT", self._url(bucket, key, query), dict(check), data)
        etag = str(resp.headers.get("ETag", ""))
        if not etag:
            raise RawUnavailable("no ETag for the part")
        return Sent(etag, str(resp.headers.get(CRC32_HEADER, "")))

    def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[Sent],
        extra: dict[str, str],
    ) -> str:
        """Join the parts (``extra``: If-Match / If-None-Match); returns the object's ETag
        ('' if the answer has none). S3 may answer 200 with an error in the body: that is an
        error here too."""
        body = "<CompleteMultipartUpload>"
        for n, part in enumerate(parts, 1):
            body += f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(part.etag)}</ETag>"
            if part.checksum:
                body += f"<ChecksumCRC32>{escape(part.checksum)}</ChecksumCRC32>"
            body += "</Part>"
        data = (body + "</CompleteMultipartUpload>").encode()
        digest = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        headers = {"Content-MD5": digest, "Content-Type": "application/xml", **extra}
        resp = self._send("POST", self._url(bucket, key, {"uploadId": upload_id}), headers, data)
        root = _xml_root(resp.data)
        if root.tag.rpartition("}")[2] == "Error":
            code = root.findtext("Code") or "unknown"
            if code == "PreconditionFailed":
                raise ConditionFailedError("the object changed since it was listed")
            raise RawUnavailable(f"CompleteMultipartUpload: {code}")
        return _element_text(root, "ETag").strip('"')

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        """Abandon a multipart upload (its parts are deleted)."""
        self._send("DELETE", self._url(bucket, key, {"uploadId": upload_id}), {})

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        check: dict[str, str],
        extra: dict[str, str] | None = None,
    ) -> Sent:
        """PUT a small object with its checksum header (``check``: Content-MD5 or the CRC32,
        which the server verifies).

        ``extra`` headers (If-Match, If-None-Match, x-amz-meta-*) are sent and signed as given;
        a 412 raises ConditionFailedError.
        """
        resp = self._send("PUT", self._url(bucket, key), {**check, **(extra or {})}, data)
        etag = str(resp.headers.get("ETag", "")).strip('"')
        return Sent(etag, str(resp.headers.get(CRC32_HEADER, "")))


def range_start(content_range: str) -> int:
    """The first byte of ``bytes START-END/TOTAL``; -1 when it is not that."""
    unit, _, rest = content_range.partition(" ")
    start = rest.partition("-")[0]
    return int(start) if unit == "bytes" and start.isdigit() else -1


class _Crc32:
    """A running CRC32 with hashlib's ``update`` and ``digest``."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | memoryview) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def _drain(
    resp: BaseHTTPResponse, fd: int, offset: int, update: Callable[[memoryview], object]
) -> None:
    """Copy a response body to ``fd`` from ``offset`` through one reused buffer per thread,
    handing each piece to ``update`` (a digest) on the way."""
    buffer: memoryview | None = getattr(_buffers, "view", None)
    if buffer is None:
        buffer = _buffers.view = memoryview(bytearray(_BUFFER))
    # http.client's response under urllib3's: readinto without copies, and the stored bytes
    # as they are (urllib3 would undo a Content-Encoding the object was stored with)
    source = getattr(resp, "_fp", None) or resp
    position = offset
    while n := source.readinto(buffer):
        view = buffer[:n]
        update(view)
        os.pwrite(fd, view, position)
        position += n


def _xml_root(data: bytes) -> ET.Element:
    """An XML answer, parsed; an unreadable one goes to boto3."""
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise RawUnavailable(f"unreadable answer: {exc}") from exc


def _element_text(root: ET.Element, name: str) -> str:
    """The text of the first element called ``name`` (any namespace) under ``root``."""
    for element in root.iter():
        if element.tag.rpartition("}")[2] == name:
            return element.text or ""
    return ""
