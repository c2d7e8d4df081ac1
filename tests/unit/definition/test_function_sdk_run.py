"""What sagepipe deploys runs on SageMaker's side: the SDK's own invoke_function ran it.

tests/fixtures/sdk/write_function_payloads.py compiled function_pipeline.py with sagepipe into
functions/run/; tests/fixtures/sdk/run_function_payloads.py then ran every function step with
``python -m sagemaker.remote_function.invoke_function`` of SDK 2.257.7 (and of SDK 3.x) against
a moto S3 server, with the step's ContainerArguments, and kept what the job wrote. Here sagepipe
reads those SDK-written results and compares them with calling the functions directly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sagepipe.core.references import parse_json_path
from sagepipe.definition import compile_pipeline
from sagepipe.definition.payloads import read_payload
from tests.conftest import FIXTURES
from tests.fixtures.sdk.function_pipeline import ROLE, get_pipeline, load, publish, score

SDK = FIXTURES / "sdk"
RUN = SDK / "functions" / "run"
PREP_OUTPUT = "s3://sdk-fixtures/prep/train"  # what the run resolved Steps.Prep...S3Uri to
THRESHOLD, SEED, LABEL = 0.5, 7, "species"  # the parameters' defaults


def sdk_result(sdk: str, step: str) -> Any:
    folder = RUN / f"{sdk}_results" / step / "results"
    return read_payload(
        (folder / "payload.pkl").read_bytes(),
        (folder / "metadata.json").read_bytes(),
        where=str(folder),
    )


def direct() -> dict[str, Any]:
    """The functions called in this process, on the values the run resolved."""
    rows = load.__wrapped__(PREP_OUTPUT, SEED, label=LABEL)
    value = score.__wrapped__(rows, THRESHOLD)
    return {"load": rows, "score": value, "publish": publish.__wrapped__(value, rows)}


def test_the_sdk_ran_every_step_without_an_error() -> None:
    report = json.loads((RUN / "v2_report.json").read_text())
    assert report == {
        name: {"exit_code": 0, "error": None} for name in ("load", "score", "publish")
    }


@pytest.mark.parametrize("step", ["load", "score", "publish"])
def test_the_sdk_results_equal_calling_the_function(step: str) -> None:
    assert sdk_result("v2", step) == direct()[step]


def test_results_json_answers_the_conditions_json_gets() -> None:
    # The condition reads Result (score) and Result[1] (load), as compiled in the definition.
    definition = json.loads((RUN / "definition.json").read_text())
    gate = next(s for s in definition["Steps"] if s["Name"] == "Gate")
    expected = direct()
    for condition in gate["Arguments"]["Conditions"]:
        spec = condition["LeftValue"]["Std:JsonGet"]
        step = spec["S3Uri"]["Std:Join"]["Values"][0]["Get"].split(".")[1]
        document = json.loads((RUN / "v2_results" / step / "results" / "results.json").read_text())
        assert document["Exception"] is None
        value: Any = document
        for part in parse_json_path(spec["Path"]):
            value = value[part]
        python: Any = expected[step]
        for part in parse_json_path(spec["Path"])[1:]:
            python = python[part]
        assert value == python
    # publish's return is read by no step: its job wrote no results.json.
    assert not (RUN / "v2_results" / "publish" / "results" / "results.json").exists()


def test_the_run_used_what_sagepipe_compiles_today() -> None:
    # Same pipeline, same JSON; the digests depend on the Python and cloudpickle that pickled.
    now = compile_pipeline(get_pipeline(), bucket="sdk-fixtures", role=ROLE, base_dir=SDK)

    def shape(text: str) -> Any:
        text = re.sub(r"[0-9a-f]{64}", "<sha256>", text)
        text = re.sub(r'"3\.\d+"', '"<python>"', text)
        data = json.loads(text)
        for step in data["Steps"]:
            step.pop("Description", None)  # score's default description is its file's path
        return data

    assert shape(now.definition.dumps()) == shape((RUN / "definition.json").read_text())
    stored = sorted(
        re.sub(r"[0-9a-f]{64}", "<sha256>", p.relative_to(RUN / "objects").as_posix())
        for p in (RUN / "objects").rglob("*")
        if p.is_file()
    )
    compiled = sorted(
        re.sub(r"[0-9a-f]{64}", "<sha256>", u.uri.removeprefix("s3://sdk-fixtures/"))
        for u in now.uploads
        if "/other/functions/" in u.uri
    )
    assert stored == compiled


def test_sdk_v3_refuses_unsigned_payloads() -> None:
    # SDK 3.x signs payloads with a key pair made at each build (public key in the job's
    # Environment); sagepipe writes the v2 contract, which a v3 runtime refuses.
    report = json.loads((RUN / "v3_report.json").read_text())
    assert set(report) == {"load", "score", "publish"}
    for entry in report.values():
        assert "does not contain an asymmetric signature" in entry["error"]
    assert not Path(RUN / "v3_results").exists()
