"""Object stores over ``s3://bucket/key`` URIs: the embedded local directory, or any S3 endpoint."""

from sagepipe.config import STORES, Settings
from sagepipe.errors import ConfigError
from sagepipe.storage.base import (
    ConditionFailedError,
    ObjectInfo,
    ObjectStore,
    join_uri,
    parse_uri,
    put_missing,
    safe_key,
)
from sagepipe.storage.local import LocalStore

__all__ = [
    "ConditionFailedError",
    "LocalStore",
    "ObjectInfo",
    "ObjectStore",
    "join_uri",
    "open_store",
    "parse_uri",
    "put_missing",
    "safe_key",
]


def open_store(settings: Settings, kind: str | None = None) -> ObjectStore:
    """The store ``settings`` select (``store``: local or s3), or ``kind`` when given."""
    kind = kind or settings.store
    if kind not in STORES:
        raise ConfigError(f"store {kind!r} is unknown; use one of {', '.join(STORES)}")
    if kind == "s3":
        from sagepipe.storage.s3 import S3Store

        return S3Store.from_settings(settings)
    return LocalStore(settings.local_store_root)
