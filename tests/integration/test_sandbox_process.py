"""The process sandbox isolates nothing, but inputs and publishing follow the same rules."""

from __future__ import annotations

from sagepipe import Pipeline, ProcessingInput, ProcessingOutput, ProcessingStep, Processor
from sagepipe.config import Settings
from sagepipe.storage import LocalStore
from tests.integration.helpers import run

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def test_a_step_cannot_change_a_stored_input_or_publish_a_link(settings: Settings) -> None:
    store = LocalStore(settings.local_store_root)
    store.put("s3://test-bucket/in/data.csv", b"a\n1\n")
    code = (
        "import os\n"
        "p = '/opt/ml/processing/input/data/data.csv'\n"
        "open(p, 'w').write('changed')\n"
        "os.symlink('/etc/passwd', '/opt/ml/processing/o/leak')\n"
        "print('/opt/mlflow/x', 's3://b/opt/ml/x')\n"
    )
    step = ProcessingStep(
        "w",
        processor=Processor(image_uri=IMAGE, command=("python3", "-c", code)),
        inputs=[ProcessingInput("s3://test-bucket/in", "/opt/ml/processing/input/data")],
        outputs=[ProcessingOutput("/opt/ml/processing/o", output_name="o")],
    )
    lines: list[tuple[str, str]] = []
    execution = run(settings, Pipeline("proc", steps=[step]), "process", lines=lines)
    assert store.get("s3://test-bucket/in/data.csv") == b"a\n1\n"
    reason = execution.list_steps()[0]["FailureReason"]
    assert reason == (
        "output /opt/ml/processing/o/leak is a symbolic link; only regular files are published"
    )
    assert ("w", "/opt/mlflow/x s3://b/opt/ml/x") in lines  # rewritten at path boundaries only
