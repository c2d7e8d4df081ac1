"""What an object's ETag or stored checksum says of its bytes, and the checks against them.

An S3 ETag is the MD5 of the bytes for a single-part upload, ``<MD5 of the parts' MD5s>-<parts>``
for a multipart one, and anything else for KMS-encrypted objects (then nothing can be checked
against it). A CRC32 the server confirmed, or keeps, stands in for the ETag where there is one.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from sagepipe.errors import StorageError

if TYPE_CHECKING:
    from sagepipe.storage.fast import Sent


def multipart_etag(digests: list[bytes]) -> str:
    """The ETag S3 gives a multipart object: MD5 of the parts' MD5s, dash, part count."""
    joined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f"{joined}-{len(digests)}"


def etag_parts(etag: str) -> int:
    """The number of parts a multipart ETag names (``<md5>-<parts>``); 0 for other ETags."""
    _, dash, tail = etag.partition("-")
    return int(tail) if dash and tail.isdigit() else 0


def md5_etag(etag: str) -> str:
    """``etag`` where it is an MD5 (plain or multipart form) a download can be checked
    against; '' for other ETags (KMS-encrypted objects)."""
    head, _, tail = etag.partition("-")
    comparable = (
        len(head) == 32
        and all(c in "0123456789abcdef" for c in head)
        and (not tail or tail.isdigit())
    )
    return etag if comparable else ""


def confirm_upload(uri: str, data: bytes, sent: Sent, crc: str) -> None:
    """The server verifies the CRC32 it was sent and says so by echoing it; one that does not
    is checked the old way, its ETag against the data's MD5 (where the ETag is an MD5).

    Raises:
        StorageError: the server stored other bytes.
    """
    if sent.checksum == crc:
        return
    etag = sent.etag.strip('"')
    if sent.checksum or (
        len(etag) == 32
        and "-" not in etag
        and etag != hashlib.md5(data, usedforsecurity=False).hexdigest()
    ):
        raise StorageError(f"{uri}: upload corrupted (the server stored other bytes)")


def check_download(uri: str, actual: str, expected: str) -> None:
    """A download's digest against the object's stored checksum or ETag ('' to skip).

    Raises:
        StorageError: they differ.
    """
    if expected and actual != expected:
        raise StorageError(f"{uri}: download corrupted (expected {expected}, got {actual})")
