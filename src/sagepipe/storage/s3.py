"""S3Store: any S3 endpoint (AWS, SeaweedFS, MinIO) through boto3."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sagepipe.config import Settings
from sagepipe.errors import ObjectNotFoundError, StorageError
from sagepipe.storage.base import ObjectInfo, parse_uri
from sagepipe.storage.local import TMP_PREFIX

_CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def boto_session(settings: Settings) -> Any:
    """A boto3 Session from the settings' environment (``.env`` included) and region."""
    import boto3

    env = settings.env
    kwargs: dict[str, Any] = {"region_name": settings.region}
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        kwargs["aws_access_key_id"] = env["AWS_ACCESS_KEY_ID"]
        kwargs["aws_secret_access_key"] = env["AWS_SECRET_ACCESS_KEY"]
        if env.get("AWS_SESSION_TOKEN"):
            kwargs["aws_session_token"] = env["AWS_SESSION_TOKEN"]
    elif env.get("AWS_PROFILE"):
        kwargs["profile_name"] = env["AWS_PROFILE"]
    return boto3.Session(**kwargs)


def s3_client(settings: Settings) -> Any:
    """An S3 client; third-party endpoints get checksums only when required."""
    from botocore.config import Config

    extra: dict[str, Any] = {"retries": {"max_attempts": 5, "mode": "standard"}}
    if settings.endpoint_url:
        extra["request_checksum_calculation"] = "when_required"
        extra["response_checksum_validation"] = "when_required"
        extra["s3"] = {"addressing_style": "path"}
    return boto_session(settings).client(
        "s3", endpoint_url=settings.endpoint_url, config=Config(max_pool_connections=32, **extra)
    )


def translate(exc: Exception, what: str) -> StorageError:
    """One actionable line for a botocore error; never the credentials."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return StorageError(
            f"{what}: no AWS credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE) in the environment or .env"
        )
    if isinstance(exc, EndpointConnectionError):
        return StorageError(
            f"{what}: cannot reach the S3 endpoint ({exc.kwargs.get('endpoint_url')})"
        )
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404", "NotFound"):
            return ObjectNotFoundError(f"{what}: not found")
        if code == "NoSuchBucket":
            return ObjectNotFoundError(
                f"{what}: the bucket does not exist (run 'sagepipe bucket init')"
            )
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            return StorageError(f"{what}: access denied; check the credentials' S3 permissions")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StorageError(f"{what}: the AWS credentials were rejected ({code}); check them")
        if code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired"):
            return StorageError(f"{what}: the session token has expired; refresh the credentials")
        return StorageError(
            f"{what}: {code or 'error'}: {exc.response.get('Error', {}).get('Message', '')}"
        )
    return StorageError(f"{what}: {type(exc).__name__}: {exc}")


class S3Store:
    """An ObjectStore over an S3 endpoint."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        """A store using the settings' endpoint, region and credentials."""
        return cls(s3_client(settings))

    def __repr__(self) -> str:
        return f"S3Store({self.client.meta.endpoint_url!r})"

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, what) from exc

    def head(self, uri: str) -> ObjectInfo | None:
        bucket, key = parse_uri(uri)
        try:
            resp = self._call(uri, self.client.head_object, Bucket=bucket, Key=key)
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
        resp = self._call(uri, self.client.get_object, Bucket=bucket, Key=key)
        data: bytes = resp["Body"].read()
        return data

    def put(self, uri: str, data: bytes) -> None:
        bucket, key = parse_uri(uri)
        self._call(uri, self.client.put_object, Bucket=bucket, Key=key, Body=data)

    def put_file(self, uri: str, path: Path) -> None:
        bucket, key = parse_uri(uri)
        self._call(uri, self.client.upload_file, Filename=str(path), Bucket=bucket, Key=key)

    def get_file(self, uri: str, path: Path) -> None:
        bucket, key = parse_uri(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
        os.close(fd)
        try:
            self._call(uri, self.client.download_file, Bucket=bucket, Key=key, Filename=tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def list(self, uri: str) -> Iterator[ObjectInfo]:
        bucket, prefix = parse_uri(uri)
        paginator = self.client.get_paginator("list_objects_v2")
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        bucket,
                        item["Key"],
                        int(item["Size"]),
                        item.get("ETag", "").strip('"'),
                        item["LastModified"].timestamp(),
                    )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, uri) from exc

    def delete(self, uri: str) -> None:
        bucket, key = parse_uri(uri)
        self._call(uri, self.client.delete_object, Bucket=bucket, Key=key)

    def ensure_bucket(self, bucket: str) -> bool:
        try:
            self._call(f"s3://{bucket}", self.client.head_bucket, Bucket=bucket)
            return False
        except ObjectNotFoundError:
            pass
        region = self.client.meta.region_name
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        self._call(f"s3://{bucket}", self.client.create_bucket, **kwargs)
        return True

    def local_path(self, uri: str) -> Path | None:
        return None
