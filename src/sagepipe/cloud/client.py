"""boto3 clients for the SageMaker backend; every call goes through the one AWS boundary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sagepipe.config import Settings
from sagepipe.storage.aws import aws_errors, boto_session

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_sagemaker import SageMakerClient


class Clients:
    """The SageMaker and CloudWatch Logs clients of one session."""

    def __init__(self, sagemaker: SageMakerClient, logs: CloudWatchLogsClient, region: str) -> None:
        self.sagemaker = sagemaker
        self.logs = logs
        self.region = region

    @classmethod
    def from_settings(cls, settings: Settings) -> Clients:
        """Clients using the settings' credentials, region and endpoint (AWS_ENDPOINT_URL)."""
        env = settings.env
        endpoint = env.get("AWS_ENDPOINT_URL_SAGEMAKER") or env.get("AWS_ENDPOINT_URL")
        logs_endpoint = env.get("AWS_ENDPOINT_URL_LOGS") or env.get("AWS_ENDPOINT_URL")
        with aws_errors("SageMaker client", "sagemaker"):
            session = boto_session(settings)
            return cls(
                session.client("sagemaker", endpoint_url=endpoint or None),
                session.client("logs", endpoint_url=logs_endpoint or None),
                settings.region,
            )
