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
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from sagepipe.storage.base import ConditionFailedError, ObjectInfo, md5_chunks

if TYPE_CHECKING:
    from botocore.credentials import Credentials
    from urllib3 import BaseHTTPResponse


class _PayloadConfig:
    """What botocore's S3 signer reads from a client config: sign no payload hash."""

    s3 = {"payload_signing_enabled": False}


_UNSIGNED_PAYLOAD = _PayloadConfig()


class RawUnavailable(Exception):
    """This request must go through boto3."""


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
        if body and "Content-MD5" in headers:  # the signed MD5 protects the body; no SHA-256
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
            raise RawUnavailable(f"HTTP {resp.status}")
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
        meta: dict[str, str] | None = None,
    ) -> str:
        """Write the object (or a byte range) to ``fd`` at ``offset``; returns the MD5 of it.

        ``meta``, when given, receives the object's user metadata (``x-amz-meta-*``).
        """
        headers = {}
        if length is not None:
            headers["Range"] = f"bytes={offset}-{offset + length - 1}"
        from urllib3.exceptions import HTTPError

        resp = self._send("GET", self._url(bucket, key), headers, preload=False)
        if meta is not None:
            for name, value in resp.headers.items():
                if name.lower().startswith("x-amz-meta-"):
                    meta[name.lower()[len("x-amz-meta-") :]] = value
        position = offset

        def write_at(chunk: bytes) -> None:  # ranges of one file arrive on several threads
            nonlocal position
            os.pwrite(fd, chunk, position)
            position += len(chunk)

        try:
            return md5_chunks(resp.stream(1 << 20), write_at)
        except (HTTPError, OSError) as exc:  # a broken stream: boto3 fetches it again
            raise RawUnavailable(str(exc)) from exc
        finally:
            resp.release_conn()

    def part_size(self, bucket: str, key: str) -> int:
        """The size of part 1 of a multipart object (HEAD ?partNumber=1)."""
        resp = self._send("HEAD", self._url(bucket, key, {"partNumber": "1"}), {})
        try:
            return int(resp.headers["Content-Length"])
        except (KeyError, ValueError) as exc:
            raise RawUnavailable("no Content-Length") from exc

    def create_multipart(self, bucket: str, key: str, extra: dict[str, str]) -> str:
        """Start a multipart upload (``extra``: x-amz-meta-* headers); returns its UploadId."""
        resp = self._send("POST", self._url(bucket, key, {"uploads": ""}), dict(extra))
        upload_id = _xml_text(resp.data, "UploadId")
        if not upload_id:
            raise RawUnavailable("no UploadId in the answer")
        return upload_id

    def upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, data: bytes, content_md5: str
    ) -> str:
        """PUT one part; the server checks Content-MD5. Returns the part's ETag (quoted)."""
        query = {"partNumber": str(number), "uploadId": upload_id}
        resp = self._send("PUT", self._url(bucket, key, query), {"Content-MD5": content_md5}, data)
        etag = str(resp.headers.get("ETag", ""))
        if not etag:
            raise RawUnavailable("no ETag for the part")
        return etag

    def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        etags: list[str],
        extra: dict[str, str],
    ) -> None:
        """Join the parts (``extra``: If-Match / If-None-Match). S3 may answer 200 with an
        error in the body: that is an error here too."""
        parts = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(etag)}</ETag></Part>"
            for n, etag in enumerate(etags, 1)
        )
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        digest = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        headers = {"Content-MD5": digest, "Content-Type": "application/xml", **extra}
        resp = self._send("POST", self._url(bucket, key, {"uploadId": upload_id}), headers, body)
        try:
            root = ET.fromstring(resp.data)
        except ET.ParseError as exc:
            raise RawUnavailable(f"unreadable answer: {exc}") from exc
        if root.tag.rpartition("}")[2] == "Error":
            code = root.findtext("Code") or "unknown"
            if code == "PreconditionFailed":
                raise ConditionFailedError("the object changed since it was listed")
            raise RawUnavailable(f"CompleteMultipartUpload: {code}")

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        """Abandon a multipart upload (its parts are deleted)."""
        self._send("DELETE", self._url(bucket, key, {"uploadId": upload_id}), {})

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        content_md5: str,
        extra: dict[str, str] | None = None,
    ) -> str:
        """PUT a small object; the server checks Content-MD5. Returns the ETag.

        ``extra`` headers (If-Match, If-None-Match, x-amz-meta-*) are sent and signed as given;
        a 412 raises ConditionFailedError.
        """
        headers = {"Content-MD5": content_md5, **(extra or {})}
        resp = self._send("PUT", self._url(bucket, key), headers, data)
        return str(resp.headers.get("ETag", "")).strip('"')


def _xml_text(data: bytes, name: str) -> str:
    """The text of the first element called ``name`` (any namespace) in an XML answer."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise RawUnavailable(f"unreadable answer: {exc}") from exc
    for element in root.iter():
        if element.tag.rpartition("}")[2] == name:
            return element.text or ""
    return ""
