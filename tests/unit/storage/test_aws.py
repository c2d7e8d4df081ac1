"""One translation of botocore errors: each becomes one line naming what to fix."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ProfileNotFound,
)

from sagepipe.errors import ObjectNotFoundError, SageMakerError, StorageError
from sagepipe.storage.aws import aws_errors, translate_aws_error


@pytest.mark.parametrize(
    ("error", "kind", "says"),
    [
        (ProfileNotFound(profile="dev"), StorageError, "AWS profile 'dev'"),
        (NoCredentialsError(), StorageError, "no AWS credentials"),
        (EndpointConnectionError(endpoint_url="http://x"), StorageError, "cannot reach http://x"),
        (
            ClientError({"Error": {"Code": "NoSuchBucket", "Message": ""}}, "ListObjectsV2"),
            ObjectNotFoundError,
            "sagepipe bucket init",
        ),
        (
            ClientError({"Error": {"Code": "AccessDenied", "Message": "no\nway"}}, "GetObject"),
            StorageError,
            "access denied; the credentials lack permission (no way)",
        ),
    ],
)
def test_s3_errors(error: Exception, kind: type[Exception], says: str) -> None:
    translated = translate_aws_error(error, "s3://b/k")
    assert type(translated) is kind
    assert says in str(translated) and "\n" not in str(translated)


def test_sagemaker_errors_and_the_context_manager() -> None:
    with (
        pytest.raises(SageMakerError, match="AWS profile 'dev'") as info,
        aws_errors("SageMaker client", "sagemaker"),
    ):
        raise ProfileNotFound(profile="dev")
    assert isinstance(info.value.__cause__, ProfileNotFound)
    with aws_errors("nothing"):
        pass  # no error, nothing raised
