"""Object stores over ``s3://bucket/key`` URIs: the embedded local directory, or any S3 endpoint."""

from sagepipe.storage.base import (
    ObjectInfo,
    ObjectStore,
    join_uri,
    parse_uri,
    put_missing,
    safe_key,
)
from sagepipe.storage.local import LocalStore

__all__ = [
    "LocalStore",
    "ObjectInfo",
    "ObjectStore",
    "join_uri",
    "open_store",
    "parse_uri",
    "put_missing",
    "safe_key",
]


def open_store(settings: object, kind: str | None = None) -> ObjectStore:
    """The store ``settings`` select (``store``: local or s3), or ``kind`` when given."""
    from sagepipe.config import Settings

    assert isinstance(settings, Settings)
    kind = kind or settings.store
    if kind == "s3":
        from sagepipe.storage.s3 import S3Store

        return S3Store.from_settings(settings)
    return LocalStore(settings.local_store_root)
