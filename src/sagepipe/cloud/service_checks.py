"""Checks the service applies when a pipeline is created, made before anything is uploaded."""

from __future__ import annotations

import re

from sagepipe.config import ROLE_ARN
from sagepipe.definition import Definition
from sagepipe.definition.cache import expire_seconds
from sagepipe.definition.compile import DEFAULT_ROLE
from sagepipe.definition.retry_policies import retry_policies
from sagepipe.definition.service_limits import MAX_DEFINITION_BYTES
from sagepipe.errors import DefinitionError

PIPELINE_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}$")
# Steps that run a SageMaker job: retry on SageMaker.* exceptions applies to these only.
JOB_STEP_TYPES = frozenset(
    {
        "Processing",
        "Training",
        "Transform",
        "Tuning",
        "Model",
        "CreateModel",
        "RegisterModel",
        "AutoML",
        "QualityCheck",
        "ClarifyCheck",
    }
)
STEP_TYPES = JOB_STEP_TYPES | {
    "Condition",
    "Fail",
    "Lambda",
    "Callback",
    "EMR",
    "NotebookJob",
    "Endpoint",
    "EndpointConfig",
    "EMRServerless",
}


def check_for_service(
    definition: Definition, pipeline_name: str, role_arn: str | None
) -> list[str]:
    """Every problem SageMaker would refuse the pipeline for, one line each."""
    problems = []
    if not PIPELINE_NAME.match(pipeline_name):
        problems.append(
            f"pipeline name {pipeline_name!r}: SageMaker allows letters, digits and '-' "
            "(not '_'), up to 256 characters"
        )
    if role_arn is not None and not ROLE_ARN.match(role_arn):
        problems.append(
            f"role {role_arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
        )
    if role_arn is None:
        problems.append("--role is required: the IAM role SageMaker runs the pipeline's jobs as")
    elif role_arn == DEFAULT_ROLE:
        problems.append(f"role {role_arn} is sagepipe's local placeholder; pass a real --role")
    size = len(definition.dumps().encode())
    if size > MAX_DEFINITION_BYTES:
        problems.append(
            f"the definition is {size:,} bytes; SageMaker accepts at most {MAX_DEFINITION_BYTES:,}"
        )
    for step in definition.all_steps():
        if role_arn is not None and step.arguments.get("RoleArn") == DEFAULT_ROLE:
            problems.append(
                f"step '{step.name}' runs as sagepipe's local placeholder role {DEFAULT_ROLE}; "
                "pass --role (or set SAGEPIPE_ROLE_ARN) so the definition names a real role"
            )
        if step.type not in STEP_TYPES:
            problems.append(f"step '{step.name}': type {step.type!r} is not a SageMaker step type")
        try:
            retry_policies(step.name, step.retry_policies)
        except DefinitionError as exc:
            problems.append(str(exc))
        for policy in step.retry_policies or ():
            for kind in policy.get("ExceptionType", []):
                if str(kind).startswith("SageMaker.") and step.type not in JOB_STEP_TYPES:
                    problems.append(
                        f"step '{step.name}': retry on {kind} only applies to job steps, not {step.type}"
                    )
        if step.cache_config and step.cache_config.get("ExpireAfter"):
            try:
                expire_seconds(str(step.cache_config["ExpireAfter"]))
            except DefinitionError as exc:
                problems.append(f"step '{step.name}': {exc}")
    return problems
