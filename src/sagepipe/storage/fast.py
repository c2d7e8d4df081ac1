"""A lean S3 path for the hot requests of a sync: listing pages, small GETs and PUTs.

Requests are signed with botocore's S3 SigV4 signer and sent with urllib3; listings are parsed
with ElementTree. botocore's full request pipeline (validation, hooks, the modelled XML parser)
costs a few milliseconds per request in Python, which dominates syncing many small files.
Any answer this path does not expect raises RawUnavailable, and the caller repeats the request
through boto3, which reports errors properly.
"""

from __future__ import annotations

import os
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from sagepipe.storage.base import ConditionFailedError, ObjectInfo, md5_chunks

if TYPE_CHECKING:
    from botocore.credentials import Credentials
    from urllib3 import BaseHTTPResponse


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
