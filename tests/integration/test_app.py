"""The example app end to end on the real penguins data: model artifact, predict, quality gate,
and one clear FailureReason for each kind of bad data."""

from __future__ import annotations

import csv
import importlib.util
import io
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from sagepipe.config import Settings
from sagepipe.engine.environments import StepEnvironments
from sagepipe.engine.execution import LocalExecution
from sagepipe.storage import LocalStore
from tests.conftest import ROOT
from tests.integration.helpers import run, statuses

DATA = ROOT / "data" / "penguins.csv"
RAW_URI = "s3://test-bucket/other/data/raw/penguins.csv"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def app_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "app_pipeline", ROOT / "app" / "sagemaker_pipeline.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_app(settings: Settings, data: bytes | None = None, **params: str) -> LocalExecution:
    store = LocalStore(settings.local_store_root)
    store.put(RAW_URI, data if data is not None else DATA.read_bytes())
    pipeline = app_module().get_pipeline(bucket="test-bucket")
    return run(
        settings,
        pipeline,
        "bwrap" if sys.platform == "linux" and _bwrap() else "process",
        parameters=params,
        name=pipeline.name,
    )


def _bwrap() -> bool:
    import shutil

    return shutil.which("bwrap") is not None


def test_app_trains_publishes_and_predicts(settings: Settings, tmp_path: Path) -> None:
    execution = run_app(settings)
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Succeeded", desc.get("FailureReason")
    assert statuses(execution) == {
        s: "Succeeded"
        for s in (
            "read_data",
            "clean_data",
            "prepare_data",
            "normalize_data",
            "train",
            "evaluate",
            "quality_gate",
            "publish_model",
            "register_model",
        )
    }
    store = LocalStore(settings.local_store_root)
    model_uri = (
        f"s3://test-bucket/other/models/penguins-training/{execution.execution_id}/model.tar.gz"
    )
    with tarfile.open(fileobj=io.BytesIO(store.get(model_uri))) as tar:
        names = set(tar.getnames())
    assert {
        "model.joblib",
        "cleaning.json",
        "encoding.json",
        "normalization.json",
        "schema.json",
        "metrics.json",
    } <= names
    model = tmp_path / "model.tar.gz"
    store.get_file(model_uri, model)
    out = tmp_path / "pred.csv"
    # Pickled by scikit-learn 1.2.1 on the image's environment: scored on that environment.
    env = StepEnvironments(settings).environment(IMAGE)
    assert env.python_version.startswith("3.9.")
    scorer = str(ROOT / "app" / "src" / "predict.py")
    done = subprocess.run(
        env.argv(
            ["python", scorer, "--model", str(model), "--data", str(DATA), "--output", str(out)]
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "InconsistentVersionWarning" not in done.stderr
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 344
    accuracy = sum(r["prediction"] == r["species"] for r in rows) / len(rows)
    assert accuracy > 0.9


def test_threshold_above_the_metric_fails_with_the_message(settings: Settings) -> None:
    execution = run_app(settings, QualityThreshold="1.5")
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Failed"
    assert desc["FailureReason"].startswith(
        "Step 'quality_too_low' failed with message: test accuracy "
    )
    assert desc["FailureReason"].endswith("is below the threshold 1.5")
    assert "publish_model" not in statuses(execution)


def _csv(text: str) -> bytes:
    return text.encode()


PENGUIN_HEADER = (
    "species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year"
)


def _mutate(column: str, value: str) -> bytes:
    lines = DATA.read_text().splitlines()
    header = lines[0].split(",")
    idx = header.index(column)
    out = [lines[0]]
    for line in lines[1:]:
        cells = line.split(",")
        cells[idx] = value
        out.append(",".join(cells))
    return ("\n".join(out) + "\n").encode()


@pytest.mark.parametrize(
    ("data", "params", "step", "message"),
    [
        (
            DATA.read_bytes(),
            {"TargetColumn": "kind", "ExpectedColumns": ""},
            "read_data",
            "target column 'kind' is not in the data",
        ),
        (_csv(PENGUIN_HEADER + "\n"), {}, "read_data", "the input data is empty: no rows"),
        (_mutate("species", "Adelie"), {}, "clean_data", "has one class ('Adelie')"),
        (
            _mutate("bill_depth_mm", ""),
            {},
            "clean_data",
            "feature 'bill_depth_mm' has no values at all",
        ),
        (
            DATA.read_bytes().replace(b",39.1,", b",thirty-nine,").replace(b",39.5,", b",n/a?,"),
            {},
            "clean_data",
            "column 'bill_length_mm' cannot be parsed as numbers",
        ),
        (
            _csv(
                "\n".join(
                    [PENGUIN_HEADER + ",note"]
                    + [
                        line + f",free text {i}"
                        for i, line in enumerate(DATA.read_text().splitlines()[1:])
                    ]
                )
                + "\n"
            ),
            {"ExpectedColumns": ""},
            "clean_data",
            "column 'note' cannot be encoded",
        ),
        (
            DATA.read_bytes(),
            {"ExpectedColumns": PENGUIN_HEADER + ",colour"},
            "read_data",
            "schema mismatch: missing columns ['colour']",
        ),
    ],
    ids=[
        "missing-target",
        "empty",
        "one-class",
        "all-nan-feature",
        "unparsable",
        "unencodable",
        "schema",
    ],
)
def test_bad_data_fails_with_one_clear_reason(
    settings: Settings, data: bytes, params: dict[str, str], step: str, message: str
) -> None:
    execution = run_app(settings, data, **params)
    desc = execution.describe()
    assert desc["PipelineExecutionStatus"] == "Failed"
    assert desc["FailureReason"].startswith(f"Step '{step}' failed with message: ERROR: ")
    assert message in desc["FailureReason"]
