"""Steps run on their image's environment through the engine: the image's results, not the host's.

The environments come from the session's cache (tests/conftest.py ``image_cache``), shared with
test_images.py and test_xgboost_algorithm.py, so each image is built once per test session.
"""

from __future__ import annotations

import copy
import io
import json
import random
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from sagepipe import (
    Estimator,
    Pipeline,
    ProcessingInput,
    ProcessingOutput,
    ProcessingStep,
    Processor,
    TrainingInput,
    TrainingStep,
)
from sagepipe.config import Settings
from sagepipe.definition import load
from sagepipe.engine.history import History
from sagepipe.errors import ConfigError
from sagepipe.images import EnvironmentBuildError
from sagepipe.storage import LocalStore
from tests.conftest import FIXTURES, HAS_BWRAP
from tests.integration.helpers import run, seed_sdk_objects, statuses

SANDBOX = "bwrap" if HAS_BWRAP else "process"
ECR = "683313688378.dkr.ecr.us-east-1.amazonaws.com"
SKLEARN = f"{ECR}/sagemaker-scikit-learn:1.2-1-cpu-py3"
XGBOOST = "246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-xgboost:{}"
HOST = ".".join(str(p) for p in sys.version_info[:2])
OUT = "/opt/ml/processing/output/parts"


def split_pipeline() -> Pipeline:
    step = ProcessingStep(
        "split",
        processor=Processor(image_uri=SKLEARN),
        code="np_split.py",  # tests/integration/scripts
        outputs=[ProcessingOutput(OUT, output_name="parts")],
    )
    return Pipeline("split", steps=[step])


def log_of(settings: Settings, pipeline: str, execution_id: str, step: str) -> str:
    store = LocalStore(settings.local_store_root)
    return store.get(f"s3://test-bucket/other/logs/{pipeline}/{execution_id}/{step}.log").decode()


def test_np_split_gives_the_image_s_dataframes(settings: Settings) -> None:
    lines: list[tuple[str, str]] = []
    execution = run(settings, split_pipeline(), SANDBOX, lines=lines)
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    log = [line for step, line in lines if step == "split"]
    assert "seen (3, 9) 1.1.3 DataFrame" in log
    assert any(
        line.startswith("environment: sagemaker-scikit-learn:1.2-1 (Python 3.9.") for line in log
    )
    store = LocalStore(settings.local_store_root)
    keys = [o.key for o in store.list("s3://test-bucket/") if o.key.endswith("/validation.csv")]
    assert len(keys) == 1 and store.get(f"s3://test-bucket/{keys[0]}") == b"a,b\n6,6\n7,7\n"


def test_a_user_entry_wins_over_the_catalogue_and_host_gives_the_host_s_result(
    settings: Settings,
) -> None:
    host = settings.with_overrides(images={"sagemaker-scikit-learn": "host"})
    lines: list[tuple[str, str]] = []
    execution = run(host, split_pipeline(), SANDBOX, lines=lines)
    reason = execution.describe().get("FailureReason", "")
    assert "'numpy.ndarray' object has no attribute 'to_csv'" in reason
    said = [line for step, line in lines if step == "images"]
    assert len(said) == 1 and "host interpreter" in said[0]


def _wrap(entrypoint: list[str]) -> list[str]:
    """Run the script after printing what the step's interpreter is (the step itself says)."""
    report = (
        "import sys, runpy; print('seen', '.'.join(map(str, sys.version_info[:2]))); "
        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    return [entrypoint[0], "-c", report, *entrypoint[1:]]


def test_an_sdk_definition_runs_each_step_on_its_own_image(settings: Settings) -> None:
    seed_sdk_objects(settings)
    raw: dict[str, Any] = json.loads((FIXTURES / "sdk" / "v2_full.json").read_text())
    data = copy.deepcopy(raw)
    steps = {s["Name"]: s for s in data["Steps"]}
    steps["Train"]["Arguments"]["AlgorithmSpecification"]["TrainingImage"] = XGBOOST.format(
        "1.7-1"
    )  # script mode (sagemaker_program) on the XGBoost image
    evaluate = steps["Evaluate"]["Arguments"]["AppSpecification"]
    evaluate["ImageUri"] = XGBOOST.format("1.0-1")
    evaluate["ContainerEntrypoint"] = _wrap(evaluate["ContainerEntrypoint"])
    preprocess = steps["Preprocess"]["Arguments"]["AppSpecification"]
    preprocess["ContainerEntrypoint"] = _wrap(preprocess["ContainerEntrypoint"])
    execution = run(settings, load(data), SANDBOX, name="SdkFullPipeline")
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    assert set(statuses(execution).values()) == {"Succeeded"}
    logs = {
        s: log_of(settings, "SdkFullPipeline", execution.execution_id, s)
        for s in ("Preprocess", "Train", "Evaluate")
    }
    assert "seen 3.9" in logs["Preprocess"].splitlines()
    assert "environment: sagemaker-scikit-learn:1.2-1 (Python 3.9." in logs["Preprocess"]
    assert "environment: sagemaker-xgboost:1.7-1 (Python 3.9." in logs["Train"]
    assert "seen 3.7" in logs["Evaluate"].splitlines()
    assert "environment: sagemaker-xgboost:1.0-1 (Python 3.7." in logs["Evaluate"]


def abalone_csv(n: int, seed: int) -> bytes:
    """Rings (label, column 0) from eight measurements, no header: built-in XGBoost's csv."""
    rnd = random.Random(seed)
    rows = []
    for _ in range(n):
        length = rnd.uniform(0.1, 0.8)
        x = [rnd.choice([0, 1, 2]), length, length * 0.8, length * 0.3, length**3 * 2]
        x += [length**3, length**3 * 0.4, length**3 * 0.6]
        y = 3 + 15 * length + 5 * x[4] + rnd.gauss(0, 0.5)
        rows.append(",".join(f"{v:.4f}" for v in [y, *x]))
    return ("\n".join(rows) + "\n").encode()


def xgboost_pipeline(hyperparameters: dict[str, str]) -> Pipeline:
    estimator = Estimator(
        image_uri=XGBOOST.format("1.7-1"),
        hyperparameters=hyperparameters,
        output_path="s3://test-bucket/models",
    )
    inputs = {
        c: TrainingInput(f"s3://test-bucket/abalone/{c}", content_type="text/csv")
        for c in ("train", "validation")
    }
    return Pipeline("abalone", steps=[TrainingStep("Train", estimator=estimator, inputs=inputs)])


def test_built_in_xgboost_trains_through_the_engine(settings: Settings) -> None:
    store = LocalStore(settings.local_store_root)
    store.put("s3://test-bucket/abalone/train/train.csv", abalone_csv(400, 1))
    store.put("s3://test-bucket/abalone/validation/validation.csv", abalone_csv(100, 2))
    hps = {"num_round": "5", "objective": "reg:squarederror", "max_depth": "3"}
    execution = run(settings, xgboost_pipeline(hps), SANDBOX)
    log = log_of(settings, "abalone", execution.execution_id, "Train")
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    record = History(settings.history_path).steps(execution.execution_id)[0]
    metrics = {m["MetricName"]: m["Value"] for m in record.properties["FinalMetricDataList"]}
    assert set(metrics) == {"train:rmse", "validation:rmse"} and 0 < metrics["validation:rmse"] < 5
    model = record.properties["ModelArtifacts"]["S3ModelArtifacts"]
    with tarfile.open(fileobj=io.BytesIO(store.get(model))) as tar:
        assert tar.getnames() == ["xgboost-model"]
    assert "[4]\ttrain-rmse:" in log and "\tvalidation-rmse:" in log


def test_a_built_in_algorithm_error_is_reported_as_sagemaker_does(settings: Settings) -> None:
    store = LocalStore(settings.local_store_root)
    store.put("s3://test-bucket/abalone/train/train.csv", abalone_csv(50, 1))
    store.put("s3://test-bucket/abalone/validation/validation.csv", abalone_csv(20, 2))
    execution = run(settings, xgboost_pipeline({"objective": "reg:squarederror"}), SANDBOX)
    reason = execution.describe()["FailureReason"]
    assert "AlgorithmError: " in reason and "num_round" in reason


def test_an_unknown_image_is_one_line_before_anything_runs(settings: Settings) -> None:
    step = ProcessingStep(
        "odd", processor=Processor(image_uri=f"{ECR}/odd-image:7", command=("python3", "-V"))
    )
    with pytest.raises(ConfigError) as caught:
        run(settings, Pipeline("odd", steps=[step]), SANDBOX)
    message = str(caught.value)
    assert "\n" not in message and "odd-image:7" in message and "[tool.sagepipe.images]" in message


def test_strict_without_the_image_s_python_is_one_line(settings: Settings) -> None:
    strict = settings.with_overrides(
        images={"my-image": {"python": "3.5", "packages": ["six==1.16.0"]}}, images_strict=True
    )
    step = ProcessingStep(
        "a", processor=Processor(image_uri=f"{ECR}/my-image:1", command=("python3", "-V"))
    )
    with pytest.raises(ConfigError) as caught:
        run(strict, Pipeline("strict", steps=[step]), SANDBOX)
    message = str(caught.value)
    assert "\n" not in message and "needs Python 3.5" in message and "strict" in message


def test_offline_with_an_uncached_environment_names_images_build(
    settings: Settings, tmp_path: Path
) -> None:
    offline = settings.with_overrides(
        images={"my-image": {"python": HOST, "packages": ["six==1.10.0"]}},
        images_offline=True,
        cache_dir=tmp_path / "empty-cache",
    )
    step = ProcessingStep(
        "a", processor=Processor(image_uri=f"{ECR}/my-image:1", command=("python3", "-V"))
    )
    with pytest.raises(EnvironmentBuildError) as caught:
        run(offline, Pipeline("offline", steps=[step]), SANDBOX)
    message = str(caught.value)
    assert "\n" not in message and "sagepipe images build" in message


# What the SDK's FrameworkProcessor puts in the code input: runproc.sh unpacks the source
# archive and installs its requirements.txt in the image before the script.
RUNPROC = """#!/bin/bash

cd /opt/ml/processing/input/code/
tar -xzf sourcedir.tar.gz

# Exit on any error. SageMaker uses error code to mark failed job.
set -e

if [[ -f 'requirements.txt' ]]; then
    # Some py3 containers has typing, which may breaks pip install
    pip uninstall --yes typing

    pip install -r requirements.txt
fi

python3 process.py "$@"
"""
SIX = "import six, sys; print('six', six.__version__, sys.version_info[:2])\n"


def sourcedir(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_framework_processor_s_requirements_install_before_network_isolation(
    settings: Settings,
) -> None:
    store = LocalStore(settings.local_store_root)
    code = "s3://test-bucket/fw/code/sourcedir.tar.gz"
    store.put(code, sourcedir({"process.py": SIX, "requirements.txt": "six==1.16.0\n"}))
    store.put("s3://test-bucket/fw/entrypoint/runproc.sh", RUNPROC.encode())
    step = ProcessingStep(
        "framework",
        processor=Processor(
            image_uri=SKLEARN,
            command=("/bin/bash", "/opt/ml/processing/input/entrypoint/runproc.sh"),
            network_isolation=True,
        ),
        inputs=[
            ProcessingInput(code, "/opt/ml/processing/input/code/", input_name="code"),
            ProcessingInput(
                "s3://test-bucket/fw/entrypoint",
                "/opt/ml/processing/input/entrypoint",
                input_name="entrypoint",
            ),
        ],
    )
    lines: list[tuple[str, str]] = []
    execution = run(settings, Pipeline("framework", steps=[step]), SANDBOX, lines=lines)
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    log = [line for _, line in lines]
    assert any(line.startswith("Installing dependencies from requirements.txt") for line in log)
    assert "six 1.16.0 (3, 9)" in log  # the image has six 1.15.0


def test_training_source_dir_requirements_are_installed_like_the_toolkit(
    settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "requirements.txt").write_text("six==1.16.0\n")
    (source / "train.py").write_text(
        SIX + "open('/opt/ml/model/six.txt', 'w').write(six.__version__)\n"
    )
    estimator = Estimator(
        entry_point="train.py",
        source_dir=str(source),
        framework="sklearn",
        framework_version="1.2-1",
        output_path="s3://test-bucket/models",
        network_isolation=True,
    )
    lines: list[tuple[str, str]] = []
    pipeline = Pipeline("script", steps=[TrainingStep("Train", estimator=estimator)])
    execution = run(settings, pipeline, SANDBOX, lines=lines)
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    log = [line for _, line in lines]
    assert any(line.startswith("Installing dependencies from requirements.txt") for line in log)
    assert "six 1.16.0 (3, 9)" in log


def test_validate_lists_each_step_s_environment_and_accepts_built_in_xgboost(
    tmp_path: Path,
) -> None:
    from tests.integration.test_cli import sp

    (tmp_path / "pyproject.toml").write_text('[tool.sagepipe]\nbucket = "test-bucket"\n')
    definition = json.loads((FIXTURES / "sdk" / "v2_full.json").read_text())
    train = next(s for s in definition["Steps"] if s["Name"] == "Train")["Arguments"]
    train["AlgorithmSpecification"]["TrainingImage"] = XGBOOST.format("1.7-1")
    train["HyperParameters"] = {"num_round": "5", "objective": "reg:squarederror"}
    (tmp_path / "d.json").write_text(json.dumps(definition))
    res = sp(tmp_path, "validate", "d.json")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [line for line in res.stdout.splitlines() if line.startswith("environment: ")]
    assert len(lines) == 3 and all("Python 3.9." in line for line in lines), res.stdout
    train_line = next(line for line in lines if "'Train'" in line)
    assert "sagemaker-xgboost:1.7-1 -> sagemaker-xgboost:1.7-1" in train_line
    assert "runs the image's built-in algorithm" in train_line
    train["AlgorithmSpecification"]["TrainingImage"] = f"{ECR}/odd-image:7"
    (tmp_path / "d.json").write_text(json.dumps(definition))
    res = sp(tmp_path, "validate", "d.json")
    odd = [line for line in res.stdout.splitlines() if line.startswith("cannot run here")]
    assert res.returncode == 1 and len(odd) == 1 and "odd-image:7" in odd[0]


@pytest.mark.parametrize(
    ("image", "python"),
    [(SKLEARN, "(3, 9)"), (XGBOOST.format("0.90-2"), "(3, 6)")],  # 0.90-2: the oldest Python
    ids=["scikit-learn-1.2-1", "xgboost-0.90-2"],
)
def test_a_warm_start_runs_on_the_step_s_environment(
    settings: Settings, image: str, python: str
) -> None:
    upstream = ProcessingStep(
        "upstream",
        processor=Processor(
            image_uri=SKLEARN, command=("python3", "-c", "import time; time.sleep(1)")
        ),
    )
    step = ProcessingStep(
        "version", processor=Processor(image_uri=image), code="version.py", depends_on=[upstream]
    )
    lines: list[tuple[str, str]] = []
    execution = run(settings, Pipeline("warm", steps=[upstream, step]), SANDBOX, lines=lines)
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    assert execution.run.warmed == {"version"}
    assert ("version", f"seen {python} __main__") in lines
