"""The Python API a SageMaker SDK user expects: definition(), start(), wait/describe/list_steps."""

from __future__ import annotations

import json

import pytest

from sagepipe import (
    ParameterString,
    Pipeline,
    ProcessingInput,
    ProcessingOutput,
    ProcessingStep,
    Processor,
)
from sagepipe.config import Settings
from sagepipe.storage import LocalStore
from tests.integration.helpers import SCRIPTS, run

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def test_definition_start_wait_describe(settings: Settings) -> None:
    message = ParameterString("Message", default_value="hello")
    step = ProcessingStep(
        "echo",
        processor=Processor(
            image_uri=IMAGE,
            command=(
                "python3",
                "-c",
                "import sys; open('/opt/ml/processing/o/m.txt', 'w').write(sys.argv[1])",
            ),
        ),
        outputs=[ProcessingOutput("/opt/ml/processing/o", output_name="o")],
        job_arguments=[message],
    )
    pipeline = Pipeline("api-demo", steps=[step], parameters=[message])
    definition = json.loads(pipeline.definition(settings))
    assert definition["Parameters"] == [
        {"Name": "Message", "Type": "String", "DefaultValue": "hello"}
    ]
    execution = pipeline.start(parameters={"Message": "from the API"}, settings=settings)
    assert execution.wait(60) == "Succeeded"
    assert execution.describe()["PipelineExecutionArn"] == execution.arn
    assert [s["StepName"] for s in execution.list_steps()] == ["echo"]
    store = LocalStore(settings.local_store_root)
    uri = f"s3://test-bucket/other/outputs/api-demo/{execution.execution_id}/echo/o/m.txt"
    assert store.get(uri) == b"from the API"


def test_manifest_file_input(settings: Settings) -> None:
    store = LocalStore(settings.local_store_root)
    store.put("s3://test-bucket/data/a.csv", b"1\n")
    store.put("s3://test-bucket/data/sub/b.csv", b"2\n")
    store.put("s3://test-bucket/data/unlisted.csv", b"3\n")
    manifest = [{"prefix": "s3://test-bucket/data/"}, "a.csv", "sub/b.csv"]
    store.put("s3://test-bucket/manifests/m.json", json.dumps(manifest).encode())
    code = "import os; print(sorted(os.path.relpath(os.path.join(r, f), '/opt/ml/processing/input/data') for r, _, fs in os.walk('/opt/ml/processing/input/data') for f in fs))"
    step = ProcessingStep(
        "manifest",
        processor=Processor(image_uri=IMAGE, command=("python3", "-c", code)),
        inputs=[
            ProcessingInput(
                "s3://test-bucket/manifests/m.json",
                "/opt/ml/processing/input/data",
                s3_data_type="ManifestFile",
            )
        ],
    )
    lines: list[str] = []

    captured: list[tuple[str, str]] = []
    execution = run(settings, Pipeline("man", steps=[step]), "process", lines=captured)
    lines = [line for _, line in captured]
    assert execution.describe()["PipelineExecutionStatus"] == "Succeeded", execution.describe()
    assert any(
        "['a.csv', 'sub/b.csv']" in line.replace(str(settings.home), "") or "a.csv" in line
        for line in lines
    )
    assert not any("unlisted" in line for line in lines)


def test_missing_script_is_refused_when_compiled(settings: Settings) -> None:
    from sagepipe.errors import PipelineError

    step = ProcessingStep("x", processor=Processor(image_uri=IMAGE), code=str(SCRIPTS / "nope.py"))
    with pytest.raises(PipelineError, match=r"nope\.py' not found"):
        Pipeline("p", steps=[step]).definition(settings)
