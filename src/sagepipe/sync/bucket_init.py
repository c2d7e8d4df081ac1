"""``bucket init``: the bucket and the seed's folder markers, idempotently."""

from __future__ import annotations

from collections.abc import Iterable

from sagepipe.errors import SyncError
from sagepipe.records import record
from sagepipe.storage import ObjectStore


@record
class InitResult:
    """What ``init`` created and what was already there."""

    bucket_created: bool
    created: tuple[str, ...]
    existing: tuple[str, ...]


def init_bucket(store: ObjectStore, bucket: str, folders: Iterable[str]) -> InitResult:
    """Create ``bucket`` when missing and a zero-byte ``folder/`` marker for each folder."""
    created_bucket = store.ensure_bucket(bucket)
    created, existing = [], []
    for folder in folders:
        key = folder.strip("/") + "/"
        if key == "/" or ".." in key.split("/"):
            raise SyncError(f"folder {folder!r} in the bucket layout is not a valid prefix")
        uri = f"s3://{bucket}/{key}"
        if store.head(uri) is not None:
            existing.append(key)
            continue
        store.put(uri, b"")
        created.append(key)
    return InitResult(created_bucket, tuple(created), tuple(existing))
