"""Abalone-style built-in XGBoost pipelines built by the official SDK run unchanged, end to end.

``tests/fixtures/sdk/generate_xgboost.py`` (SDK v2) and ``generate_xgboost_v3.py`` (SDK 3.x)
built one definition per XGBoost image (1.0-1, 1.7-1, 3.0-5) with ``image_uris.retrieve`` and saved what the SDK uploaded (scripts, synthetic raw data)
under objects/. Each runs here as written: preprocessing on scikit-learn 1.2-1, the image's
built-in algorithm, an evaluation on the XGBoost image that loads ``xgboost-model`` the way that
image wrote it, a condition on the MSE (JsonGet of a PropertyFile), then model creation,
registration and a batch transform.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import signal
import subprocess
import tarfile
import textwrap
from pathlib import Path

import pytest

from sagepipe.config import Settings
from sagepipe.definition import load
from sagepipe.engine.history import History, StepRecord
from sagepipe.images import Environment, ensure_environment, resolve
from sagepipe.storage import LocalStore
from tests.conftest import FIXTURES, HAS_BWRAP
from tests.integration.helpers import run, seed_sdk_objects, statuses
from tests.integration.test_serve import Served, free_port

SANDBOX = "bwrap" if HAS_BWRAP else "process"
ROUND = re.compile(r"^\[(\d+)\]\ttrain-rmse:(\d+\.\d+)\tvalidation-rmse:(\d+\.\d+)$")
XGBOOST = {"1.0-1": "1.0.0", "1.7-1": "1.7.4", "3.0-5": "3.0.5"}
STEPS = ("Preprocess", "TrainAbalone", "EvaluateAbalone", "CheckMse", "AbaloneTransform")
# v2's ModelStep suffixes the step names with what it does; 3.x's keeps the name given
MODEL_STEPS = {
    "v2": ("AbaloneModel-CreateModel", "AbaloneRegister-RegisterModel"),
    "v3": ("AbaloneModel", "AbaloneRegister"),
}


def environment(version: str, cache: Path) -> Environment:
    image = f"683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:{version}"
    return ensure_environment(resolve(image, {}), cache)


def env_predictions(env: Environment, model: Path, features: Path, pickled: bool) -> list[str]:
    """That environment's xgboost, loading the model as its image wrote it, on the features."""
    load = (
        f"import pickle; b = pickle.load(open({str(model)!r}, 'rb'))"
        if pickled
        else f"b = xgb.Booster(); b.load_model({str(model)!r})"
    )
    code = f"""
        import numpy as np, xgboost as xgb
        {load}
        x = np.loadtxt({str(features)!r}, delimiter=",", ndmin=2)
        print("\\n".join(map(str, b.predict(xgb.DMatrix(x)).tolist())))
    """
    done = subprocess.run(
        env.argv(["python", "-c", textwrap.dedent(code)]), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def check_model_format(version: str, data: bytes) -> bool:
    """The model file is in the format the image version writes; True when pickled."""
    if version == "1.0-1":  # a pickled Booster (protocol 3 on Python 3.7)
        assert data[:2] == b"\x80\x03"
        return True
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(data)
    if version == "1.7-1":  # xgboost's binary format
        assert not data.startswith(b"{")
    else:  # 3.x: UBJSON, an object that is not JSON text
        assert data.startswith(b"{")
        with pytest.raises(ValueError):
            json.loads(data)
    return False


def output_uri(record: StepRecord, name: str) -> str:
    outputs = record.properties["ProcessingOutputConfig"]["Outputs"]
    return str(next(o for o in outputs if o["OutputName"] == name)["S3Output"]["S3Uri"])


@pytest.mark.parametrize("sdk", ["v2", "v3"])
@pytest.mark.parametrize("version", list(XGBOOST))
def test_sdk_xgboost_pipeline_runs_end_to_end(
    settings: Settings, cache: Path, tmp_path: Path, version: str, sdk: str
) -> None:
    seed_sdk_objects(settings)
    tag = version.replace(".", "").replace("-", "")
    name = f"SdkXgboost{tag}" if sdk == "v2" else f"SdkV3Xgboost{tag}"
    fixture = f"xgboost_{version}.json" if sdk == "v2" else f"xgboost_v3_{version}.json"
    definition = load(FIXTURES / "sdk" / fixture)
    execution = run(settings, definition, SANDBOX, name=name)
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    assert statuses(execution) == dict.fromkeys((*STEPS, *MODEL_STEPS[sdk]), "Succeeded")
    history = History(settings.history_path)
    records = {r.name: r for r in history.steps(execution.execution_id)}
    store = LocalStore(settings.local_store_root)

    # the built-in algorithm: 40 rounds, each evaluated on both channels, as the image prints
    log = history.step_log(execution.execution_id, "TrainAbalone") or ""
    rounds = [m for m in map(ROUND.match, log.splitlines()) if m]
    assert [int(m.group(1)) for m in rounds] == list(range(40)), log[-2000:]
    metrics = {
        m["MetricName"]: m["Value"]
        for m in records["TrainAbalone"].properties["FinalMetricDataList"]
    }
    assert metrics == {
        "train:rmse": float(rounds[-1].group(2)),
        "validation:rmse": float(rounds[-1].group(3)),
    }
    assert metrics["validation:rmse"] < 3.0

    # the model file, in that version's format
    artifact = records["TrainAbalone"].properties["ModelArtifacts"]["S3ModelArtifacts"]
    with tarfile.open(fileobj=io.BytesIO(store.get(artifact))) as tar:
        assert tar.getnames() == ["xgboost-model"]
        member = tar.extractfile("xgboost-model")
        assert member is not None
        model_bytes = member.read()
    pickled = check_model_format(version, model_bytes)

    # the evaluation script loaded it on that image's environment and wrote the PropertyFile
    report = json.loads(
        store.get(output_uri(records["EvaluateAbalone"], "evaluation") + "/evaluation.json")
    )
    assert report["model"] == {
        "loaded_with": "pickle" if pickled else "save_model",
        "xgboost": XGBOOST[version],
        "rows": 180,
    }
    mse = report["regression_metrics"]["mse"]["value"]
    assert 0 < mse <= 6.0
    assert records["CheckMse"].metadata == {"Condition": {"Outcome": "True"}}

    # registered with its image, data and metrics
    (package,) = history.models(f"{name}Group")
    assert package["model_data_url"] == artifact
    image = definition.step("TrainAbalone").arguments["AlgorithmSpecification"]["TrainingImage"]
    assert package["image"] == image and f"sagemaker-xgboost:{version}" in image

    # the transform: one line per test row, that environment's own prediction
    features = tmp_path / "test-features.csv"
    features.write_bytes(
        store.get(output_uri(records["Preprocess"], "transform") + "/test-features.csv")
    )
    model = tmp_path / "xgboost-model"
    model.write_bytes(model_bytes)
    want = env_predictions(environment(version, cache), model, features, pickled)
    got = store.get(f"s3://sdk-fixtures/xgboost/{name}/transform/test-features.csv.out").decode()
    assert got.splitlines() == want and len(want) == 180

    # served from the registry's record: the image it was registered with, the same predictions
    served = Served(settings.project_root, artifact, "--port", str(free_port()))
    try:
        status, _, body = served.request(
            "/invocations",
            features.read_bytes(),
            {"Content-Type": "text/csv", "Accept": "text/csv"},
        )
        assert status == 200 and body.split(",") == want
        assert served.stop(signal.SIGTERM)[0] == 0
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.communicate()


def test_sdk_repack_step_runs_its_shell_launcher_and_the_script_mode_model_transforms(
    settings: Settings, cache: Path, tmp_path: Path
) -> None:
    """A Model with an entry point: the SDK's RepackModel training step (scikit-learn image,
    ``sagemaker_program`` ``_repack_script_launcher.sh``) puts the model and ``code/`` into a new
    archive; the created model serves with the inference script's ``model_fn``."""
    seed_sdk_objects(settings)
    definition = load(FIXTURES / "sdk" / "xgboost_repack.json")
    repack = definition.step("AbaloneModel-RepackModel-0").arguments
    assert repack["HyperParameters"]["sagemaker_program"] == '"_repack_script_launcher.sh"'
    execution = run(settings, definition, SANDBOX, name="SdkXgboostRepack")
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    assert statuses(execution) == dict.fromkeys(
        (
            "Preprocess",
            "TrainAbalone",
            "AbaloneModel-RepackModel-0",
            "AbaloneModel-CreateModel",
            "AbaloneTransform",
        ),
        "Succeeded",
    )
    history = History(settings.history_path)
    records = {r.name: r for r in history.steps(execution.execution_id)}
    log = history.step_log(execution.execution_id, "AbaloneModel-RepackModel-0") or ""
    assert (
        "repacked model.tar.gz with ['_repack_model.py', '_repack_script_launcher.sh', 'inference.py']"
        in log
    )
    store = LocalStore(settings.local_store_root)
    repacked = records["AbaloneModel-RepackModel-0"].properties["ModelArtifacts"][
        "S3ModelArtifacts"
    ]
    with tarfile.open(fileobj=io.BytesIO(store.get(repacked))) as tar:
        names = set(tar.getnames())
        member = tar.extractfile("xgboost-model")
        assert member is not None
        (tmp_path / "xgboost-model").write_bytes(member.read())
    assert {"xgboost-model", "code/inference.py", "code/_repack_script_launcher.sh"} <= names
    created = records["AbaloneModel-CreateModel"].properties["PrimaryContainer"]
    assert created["ModelDataUrl"] == repacked
    features = tmp_path / "test-features.csv"
    features.write_bytes(
        store.get(output_uri(records["Preprocess"], "transform") + "/test-features.csv")
    )
    want = env_predictions(environment("1.7-1", cache), tmp_path / "xgboost-model", features, False)
    got = store.get("s3://sdk-fixtures/xgboost/SdkXgboostRepack/transform/test-features.csv.out")
    values = got.decode().splitlines()
    assert len(values) == len(want) == 180
    assert [float(v) for v in values] == pytest.approx([float(w) for w in want], rel=1e-6)
