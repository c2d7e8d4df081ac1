"""boto3 clients for the SageMaker backend, and one-line messages for the errors people meet."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sagepipe.config import Settings
from sagepipe.errors import SageMakerError
from sagepipe.storage.s3 import boto_session

T = TypeVar("T")


def is_not_found(error: Mapping[str, Any]) -> bool:
    """Whether a ClientError's Error block says the resource does not exist."""
    message = str(error.get("Message", ""))
    return (
        error.get("Code") == "ResourceNotFound"
        or "does not exist" in message
        or "Could not find" in message
    )


def translate(exc: Exception, what: str) -> SageMakerError:
    """An actionable one-line SageMakerError for a botocore error (never credentials)."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return SageMakerError(
            f"{what}: no AWS credentials found; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
            "AWS_PROFILE (environment or .env)"
        )
    if isinstance(exc, NoRegionError):
        return SageMakerError(f"{what}: no AWS region; set AWS_REGION")
    if isinstance(exc, EndpointConnectionError):
        return SageMakerError(
            f"{what}: cannot reach {exc.kwargs.get('endpoint_url')}; check AWS_REGION "
            "(is SageMaker available there?) and the network"
        )
    if not isinstance(exc, ClientError):
        return SageMakerError(f"{what}: {type(exc).__name__}: {exc}")
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", ""))
    if code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired"):
        return SageMakerError(f"{what}: the AWS session token has expired; refresh the credentials")
    if code in (
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
    ):
        return SageMakerError(
            f"{what}: AWS rejected the credentials ({code}); check them and AWS_REGION"
        )
    if code in ("AccessDenied", "AccessDeniedException", "403"):
        return SageMakerError(
            f"{what}: access denied; the credentials lack permission ({message[:160]})"
        )
    if code == "ResourceLimitExceeded":
        return SageMakerError(
            f"{what}: SageMaker resource limit exceeded ({message[:160]}); request a quota "
            "increase or stop running jobs"
        )
    if is_not_found(error):
        return SageMakerError(
            f"{what}: not found ({message[:160]}); deploy it with 'sagepipe deploy'"
        )
    if code == "ValidationException" and ("assume" in message.lower() or "role" in message.lower()):
        return SageMakerError(
            f"{what}: SageMaker cannot use the role ({message[:160]}); the role must trust "
            "sagemaker.amazonaws.com and allow the pipeline's actions"
        )
    return SageMakerError(f"{what}: {code}: {message[:200]}")


class Clients:
    """The SageMaker and CloudWatch Logs clients of one session."""

    def __init__(self, sagemaker: Any, logs: Any, region: str) -> None:
        self.sagemaker = sagemaker
        self.logs = logs
        self.region = region

    @classmethod
    def from_settings(cls, settings: Settings) -> Clients:
        """Clients using the settings' credentials, region and endpoint (AWS_ENDPOINT_URL)."""
        session = boto_session(settings)
        endpoint = settings.env.get("AWS_ENDPOINT_URL_SAGEMAKER") or settings.env.get(
            "AWS_ENDPOINT_URL"
        )
        logs_endpoint = settings.env.get("AWS_ENDPOINT_URL_LOGS") or settings.env.get(
            "AWS_ENDPOINT_URL"
        )
        return cls(
            session.client("sagemaker", endpoint_url=endpoint or None),
            session.client("logs", endpoint_url=logs_endpoint or None),
            settings.region,
        )

    def call(self, what: str, fn: Callable[..., T], **kwargs: Any) -> T:
        """Call ``fn`` and translate botocore errors."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, what) from exc
