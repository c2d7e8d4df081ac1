"""SageMaker framework image URIs for the frameworks the authoring API names."""

from __future__ import annotations

from sagepipe.errors import PipelineError

# ECR accounts serving the scikit-learn and XGBoost images (AWS-published, per region).
_SKLEARN_ACCOUNTS = {
    "us-east-1": "683313688378",
    "us-east-2": "257758044811",
    "us-west-1": "746614075791",
    "us-west-2": "246618743249",
    "eu-west-1": "141502667606",
    "eu-west-2": "764974769150",
    "eu-central-1": "492215442770",
    "ap-northeast-1": "354813040037",
    "ap-southeast-1": "121021644041",
    "ap-southeast-2": "783357654285",
}
_DLC_ACCOUNT = "763104351884"


def framework_image(framework: str, version: str, region: str, py_version: str = "py3") -> str:
    """The SageMaker image URI for ``framework`` at ``version`` in ``region``.

    Raises:
        PipelineError: for a framework or region this table does not know (give image_uri).
    """
    if framework == "pytorch":
        return (
            f"{_DLC_ACCOUNT}.dkr.ecr.{region}.amazonaws.com/pytorch-training:{version}-cpu-"
            f"{py_version}"
        )
    account = _SKLEARN_ACCOUNTS.get(region)
    if account is None:
        raise PipelineError(
            f"no {framework} image known for region {region!r}; pass image_uri explicitly"
        )
    if framework == "sklearn":
        return f"{account}.dkr.ecr.{region}.amazonaws.com/sagemaker-scikit-learn:{version}-cpu-py3"
    if framework == "xgboost":
        return f"{account}.dkr.ecr.{region}.amazonaws.com/sagemaker-xgboost:{version}"
    raise PipelineError(
        f"unknown framework {framework!r}; use sklearn, xgboost or pytorch, or pass image_uri"
    )
