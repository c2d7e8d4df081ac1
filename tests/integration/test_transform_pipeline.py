"""A definition in the shape of AWS's abalone example runs end to end with a batch transform.

Preprocess (scikit-learn 1.2-1 image) -> Train (XGBoost 1.7-1 image, script mode) -> Model ->
Transform (the model served as the XGBoost image serves it) under bwrap, each step on its
image's environment (mapped through ``[tool.sagepipe.images]``). The ``.out`` file must hold,
line by line, the label kept by the join and the environment's own xgboost prediction.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import shlex
import subprocess
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sagepipe.cli.pipeline import local_problems
from sagepipe.config import Settings
from sagepipe.definition import load
from sagepipe.engine.history import History
from sagepipe.images import Environment
from sagepipe.storage import LocalStore
from tests.conftest import HAS_BWRAP
from tests.integration.conftest import SKLEARN_1_2_1, XGBOOST_1_7_1
from tests.integration.helpers import run, statuses

needs_bwrap = pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap is not installed")
BUCKET = "abalone"
CODE = f"s3://{BUCKET}/code"
ROLE = "arn:aws:iam::111122223333:role/SageMakerRole"

PREPROCESS = """
import random
random.seed(7)
rows = []
for _ in range(240):
    length = random.uniform(0.1, 0.8)
    x = [random.choice([0, 1, 2]), length, length * 0.8, length * 0.3, length ** 3 * 2]
    rows.append([round(3 + 15 * length + 5 * x[4] + random.gauss(0, 0.5), 3)] + x)
def write(path, part):
    with open(path, "w") as fh:
        fh.writelines(",".join("%g" % v for v in r) + "\\n" for r in part)
write("/opt/ml/processing/train/train.csv", rows[:200])
write("/opt/ml/processing/test/test.csv", rows[200:])
"""

TRAIN = """
import os, numpy as np, xgboost as xgb
data = np.loadtxt(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "train.csv"), delimiter=",")
booster = xgb.train({"max_depth": 3, "eta": 0.3}, xgb.DMatrix(data[:, 1:], label=data[:, 0]), 8)
booster.save_model(os.path.join(os.environ["SM_MODEL_DIR"], "xgboost-model"))
"""


def _output(name: str, step: str) -> dict[str, Any]:
    uri = {
        "Std:Join": {
            "On": "/",
            "Values": ["s3:/", BUCKET, "out", {"Get": "Execution.PipelineExecutionId"}, step, name],
        }
    }
    return {
        "OutputName": name,
        "AppManaged": False,
        "S3Output": {
            "S3Uri": uri,
            "LocalPath": f"/opt/ml/processing/{name}",
            "S3UploadMode": "EndOfJob",
        },
    }


def abalone_definition(content_type: str = "text/csv") -> dict[str, Any]:
    """Steps in the shape the SageMaker Python SDK v2 writes for the abalone example."""
    test_uri = {"Get": "Steps.Preprocess.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri"}
    train_uri = {"Get": "Steps.Preprocess.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"}
    s3 = {"S3DataType": "S3Prefix", "S3DataDistributionType": "FullyReplicated"}
    return {
        "Version": "2020-12-01",
        "Metadata": {},
        "Parameters": [],
        "Steps": [
            {
                "Name": "Preprocess",
                "Type": "Processing",
                "Arguments": {
                    "ProcessingResources": {
                        "ClusterConfig": {
                            "InstanceType": "ml.m5.xlarge",
                            "InstanceCount": 1,
                            "VolumeSizeInGB": 30,
                        }
                    },
                    "AppSpecification": {
                        "ImageUri": SKLEARN_1_2_1,
                        "ContainerEntrypoint": [
                            "python3",
                            "/opt/ml/processing/input/code/preprocess.py",
                        ],
                    },
                    "RoleArn": ROLE,
                    "ProcessingInputs": [
                        {
                            "InputName": "code",
                            "AppManaged": False,
                            "S3Input": {
                                **s3,
                                "S3Uri": f"{CODE}/preprocess.py",
                                "LocalPath": "/opt/ml/processing/input/code",
                                "S3InputMode": "File",
                            },
                        }
                    ],
                    "ProcessingOutputConfig": {
                        "Outputs": [_output("train", "Preprocess"), _output("test", "Preprocess")]
                    },
                },
            },
            {
                "Name": "TrainAbaloneModel",
                "Type": "Training",
                "Arguments": {
                    "AlgorithmSpecification": {
                        "TrainingInputMode": "File",
                        "TrainingImage": XGBOOST_1_7_1,
                    },
                    "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models"},
                    "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
                    "ResourceConfig": {
                        "VolumeSizeInGB": 30,
                        "InstanceCount": 1,
                        "InstanceType": "ml.m5.xlarge",
                    },
                    "RoleArn": ROLE,
                    "InputDataConfig": [
                        {
                            "DataSource": {"S3DataSource": {**s3, "S3Uri": train_uri}},
                            "ContentType": "text/csv",
                            "ChannelName": "train",
                        }
                    ],
                    "HyperParameters": {
                        "sagemaker_submit_directory": f'"{CODE}/sourcedir.tar.gz"',
                        "sagemaker_program": '"train.py"',
                        "sagemaker_region": '"us-east-1"',
                    },
                },
            },
            {
                "Name": "CreateAbaloneModel-CreateModel",
                "Type": "Model",
                "Arguments": {
                    "ExecutionRoleArn": ROLE,
                    "PrimaryContainer": {
                        "Image": XGBOOST_1_7_1,
                        "Environment": {},
                        "ModelDataUrl": {
                            "Get": "Steps.TrainAbaloneModel.ModelArtifacts.S3ModelArtifacts"
                        },
                    },
                },
            },
            {
                "Name": "AbaloneTransform",
                "Type": "Transform",
                "Arguments": {
                    "ModelName": {"Get": "Steps.CreateAbaloneModel-CreateModel.ModelName"},
                    "TransformInput": {
                        "DataSource": {
                            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": test_uri}
                        },
                        "ContentType": content_type,
                        "SplitType": "Line",
                    },
                    "TransformOutput": {
                        "S3OutputPath": f"s3://{BUCKET}/transform",
                        "AssembleWith": "Line",
                        "Accept": "text/csv",
                    },
                    "TransformResources": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge"},
                    "DataProcessing": {
                        "InputFilter": "$[1:]",
                        "JoinSource": "Input",
                        "OutputFilter": "$[0,-1]",
                    },
                },
            },
        ],
    }


@pytest.fixture
def abalone_settings(settings: Settings, xgb17: Environment, sklearn_env: Environment) -> Settings:
    """The images mapped to their environments; the code in the store.

    The patterns name the tags: a user entry equal to a built-in pattern would lose to it.
    """
    store = LocalStore(settings.local_store_root)
    store.put(f"{CODE}/preprocess.py", textwrap.dedent(PREPROCESS).encode())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        body = textwrap.dedent(TRAIN).encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    store.put(f"{CODE}/sourcedir.tar.gz", buf.getvalue())
    images = {
        r"sagemaker-xgboost:1\.7-1": shlex.join(xgb17.argv(["python"])),
        r"sagemaker-scikit-learn:1\.2-1": shlex.join(sklearn_env.argv(["python"])),
    }
    return dataclasses.replace(settings, images=images)


def predictions(env: Environment, model_tar: bytes, rows: list[list[str]], tmp: Path) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(model_tar)) as tar:
        tar.extractall(tmp, filter="data")
    features = "\n".join(",".join(r[1:]) for r in rows)
    code = f"""
import io, numpy as np, xgboost as xgb
b = xgb.Booster()
b.load_model({str(tmp / "xgboost-model")!r})
x = np.loadtxt(io.StringIO({features!r}), delimiter=",", ndmin=2)
print("\\n".join(map(str, b.predict(xgb.DMatrix(x)).tolist())))
"""
    done = subprocess.run(env.argv(["python", "-c", code]), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@needs_bwrap
def test_abalone_pipeline_transforms_the_test_set_with_the_trained_model(
    abalone_settings: Settings, xgb17: Environment, tmp_path: Path
) -> None:
    kind = "bwrap"  # the preprocessing script hardcodes /opt/ml paths, as AWS's example does
    definition = load(abalone_definition())
    assert local_problems(definition, abalone_settings) == []
    execution = run(abalone_settings, definition, kind, name="Abalone")
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    assert set(statuses(execution).values()) == {"Succeeded"}
    store = LocalStore(abalone_settings.local_store_root)
    exec_id = execution.execution_id
    test_rows = [
        line.split(",")
        for line in store.get(f"s3://{BUCKET}/out/{exec_id}/Preprocess/test/test.csv")
        .decode()
        .splitlines()
    ]
    steps = {s["StepName"]: s for s in execution.list_steps()}
    arn = steps["AbaloneTransform"]["Metadata"]["TransformJob"]["Arn"]
    assert arn.startswith(
        f"arn:aws:sagemaker:us-east-1:000000000000:transform-job/pipelines-{exec_id}-"
    )
    model_uri = next(
        o.uri for o in store.list(f"s3://{BUCKET}/models/") if o.key.endswith("model.tar.gz")
    )
    want = predictions(xgb17, store.get(model_uri), test_rows, tmp_path)
    out = store.get(f"s3://{BUCKET}/transform/test.csv.out").decode().splitlines()
    assert out == [f"{row[0]},{p}" for row, p in zip(test_rows, want, strict=True)]
    assert len(out) == 40
    props = History(abalone_settings.history_path).steps(exec_id)
    transform = next(r for r in props if r.name == "AbaloneTransform").properties
    assert transform["TransformJobStatus"] == "Completed"
    assert transform["TransformOutput"]["S3OutputPath"] == f"s3://{BUCKET}/transform"
    assert transform["ModelName"] == steps_model_name(props)

    # A later pipeline names the model literally, as one names a model created before.
    raw = abalone_definition()
    later = raw["Steps"][3]
    later["Arguments"]["ModelName"] = steps_model_name(props)
    later["Arguments"]["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] = (
        f"s3://{BUCKET}/out/{exec_id}/Preprocess/test"
    )
    later["Arguments"]["TransformOutput"]["S3OutputPath"] = f"s3://{BUCKET}/later"
    raw["Steps"] = [later]
    again = run(abalone_settings, load(raw), kind, name="AbaloneScoring")
    assert again.describe()["PipelineExecutionStatus"] == "Succeeded"
    assert store.get(f"s3://{BUCKET}/later/test.csv.out").decode().splitlines() == out


def steps_model_name(records: list[Any]) -> str:
    return str(next(r for r in records if r.type == "Model").properties["ModelName"])


INFERENCE = """
import json, os
import numpy as np

def model_fn(model_dir):
    with open(os.path.join(model_dir, "weights.json")) as fh:
        return np.array(json.load(fh))

def predict_fn(data, model):
    return data @ model
"""


@pytest.mark.parametrize("kind", [pytest.param("bwrap", marks=needs_bwrap), "process"])
def test_a_script_mode_model_serves_with_its_inference_script(
    abalone_settings: Settings, kind: str
) -> None:
    """The SDK's repacked model: ``code/inference.py`` inside model.tar.gz, found through
    SAGEMAKER_SUBMIT_DIRECTORY; the toolkit's csv decoder and json encoder around it."""
    store = LocalStore(abalone_settings.local_store_root)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in (
            ("weights.json", b"[1, 10, 100]"),
            ("code/inference.py", textwrap.dedent(INFERENCE).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    store.put(f"s3://{BUCKET}/models/scorer/model.tar.gz", buf.getvalue())
    store.put(f"s3://{BUCKET}/score/in/a.csv", b"1,2,3\n4,5,6\n")
    raw = abalone_definition()
    model, transform = raw["Steps"][2], raw["Steps"][3]
    model["Arguments"]["PrimaryContainer"] = {
        "Image": SKLEARN_1_2_1,
        "ModelDataUrl": f"s3://{BUCKET}/models/scorer/model.tar.gz",
        "Environment": {
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
            "SAGEMAKER_REGION": "us-east-1",
        },
    }
    args = transform["Arguments"]
    del args["DataProcessing"]
    args["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] = f"s3://{BUCKET}/score/in"
    args["TransformOutput"] = {
        "S3OutputPath": f"s3://{BUCKET}/score/out",
        "Accept": "application/json",
    }
    raw["Steps"] = [model, transform]
    execution = run(abalone_settings, load(raw), kind, name="Scorer")
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    assert json.loads(store.get(f"s3://{BUCKET}/score/out/a.csv.out")) == [321.0, 654.0]


@needs_bwrap
def test_an_unsupported_content_type_fails_the_transform_with_the_container_s_message(
    abalone_settings: Settings,
) -> None:
    raw = abalone_definition(content_type="application/x-parquet")
    del raw["Steps"][3]["Arguments"]["DataProcessing"]
    execution = run(abalone_settings, load(raw), "bwrap", name="Abalone")
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Failed"
    assert desc["FailureReason"] == (
        "Step 'AbaloneTransform' failed with message: ClientError: Bad HTTP status received "
        "from algorithm for input test.csv: 415 Unsupported Media Type. Content-type "
        "application/x-parquet is not supported."
    )


def test_a_transform_of_an_unknown_model_fails_naming_it(settings: Settings) -> None:
    raw = abalone_definition()
    transform = copy.deepcopy(raw["Steps"][3])
    transform["Arguments"]["ModelName"] = "no-such-model"
    transform["Arguments"]["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] = (
        f"s3://{BUCKET}/in/"
    )
    LocalStore(settings.local_store_root).put(f"s3://{BUCKET}/in/a.csv", b"1,2\n")
    raw["Steps"] = [transform]
    execution = run(settings, load(raw), "process", name="Abalone")
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Failed"
    assert 'Could not find model "no-such-model"' in desc["FailureReason"]


def test_validate_refuses_a_transform_setting_that_cannot_run(settings: Settings) -> None:
    raw = abalone_definition()
    raw["Steps"][3]["Arguments"]["TransformInput"]["SplitType"] = "TFRecord"
    problems = [
        why for step, why in local_problems(load(raw), settings) if step == "AbaloneTransform"
    ]
    assert problems == [
        "TransformInput.SplitType 'TFRecord': locally None, Line, RecordIO",
        "DataProcessing filters and JoinSource Input need SplitType Line",
    ]


def test_a_model_made_from_a_registered_package_is_served(abalone_settings: Settings) -> None:
    """RegisterModel -> Model(ModelPackageName) -> Transform: the package's container serves."""
    store = LocalStore(abalone_settings.local_store_root)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in (
            ("weights.json", b"[2, 0, 1]"),
            ("code/inference.py", textwrap.dedent(INFERENCE).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    store.put(f"s3://{BUCKET}/models/pkg/model.tar.gz", buf.getvalue())
    store.put(
        f"s3://{BUCKET}/pkg/in/a.csv", b"1,2,3\n4,5,6\n"
    )  # one row would be 0-d: savetxt refuses
    environment = {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
    }
    register = {
        "Name": "RegisterAbalone-RegisterModel",
        "Type": "RegisterModel",
        "Arguments": {
            "ModelPackageGroupName": "AbaloneModels",
            "InferenceSpecification": {
                "Containers": [
                    {
                        "Image": SKLEARN_1_2_1,
                        "Environment": environment,
                        "ModelDataUrl": f"s3://{BUCKET}/models/pkg/model.tar.gz",
                    }
                ],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            "ModelApprovalStatus": "Approved",
        },
    }
    raw = abalone_definition()
    model, transform = raw["Steps"][2], raw["Steps"][3]
    model["Arguments"]["PrimaryContainer"] = {
        "ModelPackageName": {"Get": "Steps.RegisterAbalone-RegisterModel.ModelPackageArn"}
    }
    args = transform["Arguments"]
    del args["DataProcessing"]
    args["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] = f"s3://{BUCKET}/pkg/in"
    args["TransformOutput"] = {"S3OutputPath": f"s3://{BUCKET}/pkg/out", "Accept": "text/csv"}
    raw["Steps"] = [register, model, transform]
    execution = run(abalone_settings, load(raw), "process", name="FromPackage")
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    assert store.get(f"s3://{BUCKET}/pkg/out/a.csv.out") == b"5.0\n14.0\n"


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def test_a_models_code_under_a_changed_code_key_is_refused(abalone_settings: Settings) -> None:
    """SAGEMAKER_SUBMIT_DIRECTORY at a content-addressed code key is verified like a training
    step's source directory: an archive changed after upload does not serve."""
    store = LocalStore(abalone_settings.local_store_root)
    store.put(
        f"s3://{BUCKET}/models/plain/model.tar.gz", _tar_gz({"weights.json": b"[1, 10, 100]"})
    )
    code = _tar_gz({"inference.py": textwrap.dedent(INFERENCE).encode()})
    digest = hashlib.sha256(code).hexdigest()
    submit = f"s3://{BUCKET}/app/Scorer/code/{digest}/sourcedir.tar.gz"
    store.put(submit, _tar_gz({"inference.py": b"raise SystemExit('not the compiled code')\n"}))
    store.put(f"s3://{BUCKET}/score/in/a.csv", b"1,2,3\n")
    raw = abalone_definition()
    model, transform = raw["Steps"][2], raw["Steps"][3]
    model["Arguments"]["PrimaryContainer"] = {
        "Image": SKLEARN_1_2_1,
        "ModelDataUrl": f"s3://{BUCKET}/models/plain/model.tar.gz",
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": submit},
    }
    args = transform["Arguments"]
    del args["DataProcessing"]
    args["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] = f"s3://{BUCKET}/score/in"
    args["TransformOutput"] = {"S3OutputPath": f"s3://{BUCKET}/score/out2"}
    raw["Steps"] = [model, transform]
    execution = run(abalone_settings, load(raw), "process", name="Scorer")
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Failed"
    assert "does not match its content hash" in str(desc["FailureReason"])
    assert list(store.list(f"s3://{BUCKET}/score/out2/")) == []
