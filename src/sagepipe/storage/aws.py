"""The AWS boundary: boto3 sessions from the settings, and one translation of botocore errors.

Every operation that talks to AWS (S3 or SageMaker) runs inside :func:`aws_errors`, client and
session creation included, so no botocore exception reaches the user: each becomes a one-line
:class:`StorageError` or :class:`SageMakerError` naming what failed and how to fix it.
Credentials never appear in a message.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sagepipe.config import Settings
from sagepipe.errors import ObjectNotFoundError, SageMakerError, SagepipeError, StorageError

if TYPE_CHECKING:
    import boto3

_EXPIRED = ("ExpiredToken", "ExpiredTokenException", "RequestExpired")
_REJECTED = (
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
)
_DENIED = ("AccessDenied", "AccessDeniedException", "403", "AllAccessDisabled")


def boto_session(settings: Settings) -> boto3.Session:
    """A boto3 Session from the settings' environment (``.env`` included) and region.

    Call it inside :func:`aws_errors`: a missing profile raises botocore's ProfileNotFound.
    """
    import boto3

    env = settings.env
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return boto3.Session(
            region_name=settings.region,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
        )
    return boto3.Session(region_name=settings.region, profile_name=env.get("AWS_PROFILE") or None)


def is_not_found(error: Mapping[str, object]) -> bool:
    """Whether a ClientError's Error block says the resource does not exist."""
    code = str(error.get("Code", ""))
    message = str(error.get("Message", ""))
    return (
        code in ("ResourceNotFound", "ResourceNotFoundException", "NoSuchKey", "404", "NotFound")
        or "does not exist" in message
        or "Could not find" in message
    )


def translate_aws_error(exc: Exception, what: str, service: str = "s3") -> SagepipeError:
    """One actionable line for a botocore error; ``service`` is ``s3`` or ``sagemaker``."""
    from botocore import exceptions as bx

    make: type[SagepipeError] = SageMakerError if service == "sagemaker" else StorageError
    if isinstance(exc, bx.ProfileNotFound):
        return make(
            f"{what}: AWS profile {exc.kwargs.get('profile')!r} is not in the AWS config; "
            "fix AWS_PROFILE or run 'aws configure --profile NAME'"
        )
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return make(
            f"{what}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment or .env"
        )
    if isinstance(exc, bx.NoRegionError):
        return make(f"{what}: no AWS region; set AWS_REGION")
    if isinstance(exc, bx.EndpointConnectionError):
        where = exc.kwargs.get("endpoint_url")
        hint = "AWS_ENDPOINT_URL and the network"
        if service == "sagemaker":
            hint = "AWS_REGION (is SageMaker available there?) and the network"
        return make(f"{what}: cannot reach {where}; check {hint}")
    if not isinstance(exc, bx.ClientError):
        return make(f"{what}: {type(exc).__name__}: {_line(str(exc))}")
    return _client_error(make, exc.response.get("Error", {}), what)


def _client_error(
    make: type[SagepipeError], error: Mapping[str, object], what: str
) -> SagepipeError:
    code, message = str(error.get("Code", "")), _line(str(error.get("Message", "")))[:200]
    if code in _EXPIRED:
        return make(f"{what}: the AWS session token has expired; refresh the credentials")
    if code in _REJECTED:
        return make(f"{what}: AWS rejected the credentials ({code}); check them and AWS_REGION")
    if code in _DENIED:
        return make(f"{what}: access denied; the credentials lack permission ({message})")
    if code == "NoSuchBucket":
        return ObjectNotFoundError(
            f"{what}: the bucket does not exist (create it with 'sagepipe bucket init')"
        )
    if code == "ResourceLimitExceeded":
        return make(
            f"{what}: SageMaker resource limit exceeded ({message}); request a quota increase "
            "or stop running jobs"
        )
    if code in ("NoSuchKey", "404", "NotFound"):
        return ObjectNotFoundError(f"{what}: not found")
    if is_not_found(error):
        return make(f"{what}: not found ({message}); deploy it with 'sagepipe deploy'")
    if code == "ValidationException" and ("assume" in message.lower() or "role" in message.lower()):
        return make(
            f"{what}: SageMaker cannot use the role ({message}); the role must trust "
            "sagemaker.amazonaws.com and allow the pipeline's actions"
        )
    return make(f"{what}: {code or 'error'}: {message}")


def _line(text: str) -> str:
    return " ".join(text.split())


@contextmanager
def aws_errors(what: str, service: str = "s3") -> Iterator[None]:
    """Translate any botocore error raised inside the block (see :func:`translate_aws_error`)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise translate_aws_error(exc, what, service) from exc
