"""The SDK's function-step formats: recognising a step, its contract, payload checks."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from sagepipe.definition.function_payloads import (
    PayloadError,
    check_payload,
    is_function_step,
    metadata_json,
    parse_function_step,
    read_metadata,
    results_json,
    s3_path_join,
    verify_p256,
)
from sagepipe.errors import DefinitionError
from tests.conftest import FIXTURES

SDK = FIXTURES / "sdk"
OBJECTS = SDK / "objects" / "sdk-fixtures"


def _steps(path: Path) -> list[dict]:  # type: ignore[type-arg]
    found = []
    for step in json.loads(path.read_text())["Steps"]:
        found.append(step)
        args = step.get("Arguments", {})
        found.extend(args.get("IfSteps", []) + args.get("ElseSteps", []))
    return found


def test_function_steps_are_told_from_other_training_steps() -> None:
    functions = [
        s for p in SDK.glob("functions_*.json") for s in _steps(p) if s["Type"] == "Training"
    ]
    assert len(functions) >= 20
    assert all(is_function_step(s["Arguments"]) for s in functions)
    others = [s for p in SDK.glob("v*.json") for s in _steps(p) if s["Type"] == "Training"]
    assert others and not any(is_function_step(s["Arguments"]) for s in others)
    assert not is_function_step({"AlgorithmSpecification": {"ContainerEntrypoint": "x"}})


def _arguments(extra: list[str]) -> dict:  # type: ignore[type-arg]
    argv = [
        "--s3_base_uri", "s3://b/P", "--region", "us-east-1", "--client_python_version", "3.11",
        "--dependency_settings", '{"dependency_file": "req.txt"}', "--pipeline_step_name", "S",
        "--pipeline_execution_id", "abc", "--func_step_s3_dir", "2026-01-01", *extra,
    ]  # fmt: skip
    return {
        "AlgorithmSpecification": {"ContainerArguments": argv},
        "OutputDataConfig": {"S3OutputPath": "s3://b/P/abc/S/results"},
    }


def test_the_contract_is_read_from_the_resolved_arguments() -> None:
    refs = ["--property_references", "Parameters.N", "3", "Steps.A.OutputDataConfig.S3OutputPath",
            "s3://b/P/abc/A/results", "--serialize_output_to_json", "true"]  # fmt: skip
    fn = parse_function_step(_arguments(refs), "step 'S'")
    assert fn.payload_uri("function") == "s3://b/P/S/2026-01-01/function"
    assert fn.results_uri == "s3://b/P/abc/S/results"
    assert fn.exception_uri == "s3://b/P/abc/S/exception"
    assert fn.property_references == {
        "Parameters.N": "3",
        "Steps.A.OutputDataConfig.S3OutputPath": "s3://b/P/abc/A/results",
    }
    assert fn.returns_read() == {"A": "s3://b/P/abc/A/results"}
    assert fn.serialize_output_to_json and fn.dependency_file == "req.txt"


def test_a_broken_contract_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError, match="key, value pairs"):
        parse_function_step(_arguments(["--property_references", "Parameters.N"]), "step 'S'")
    args = _arguments([])
    args["AlgorithmSpecification"]["ContainerArguments"] = ["--s3_base_uri", "s3://b"]
    with pytest.raises(DefinitionError, match="without --client_python_version"):
        parse_function_step(args, "step 'S'")


def test_s3_path_join_is_the_sdk_s() -> None:
    assert s3_path_join("s3://b/p/", "", "/s/", "x") == "s3://b/p/s/x"
    assert s3_path_join("a", "b") == "a/b"


def _fixture_payload(pipeline: str, step: str, folder: str) -> tuple[bytes, bytes]:
    (found,) = (OBJECTS / pipeline / step).glob(f"*/{folder}")
    return (found / "payload.pkl").read_bytes(), (found / "metadata.json").read_bytes()


def _public_key(pipeline: str, step: str) -> str:
    path = SDK / f"functions_v3_{pipeline}.json"
    (found,) = [s for s in _steps(path) if s["Name"] == step]
    return str(found["Arguments"]["Environment"]["REMOTE_FUNCTION_SECRET_KEY"])


def test_v2_payloads_carry_their_sha256() -> None:
    payload, metadata = _fixture_payload("FnChainV2", "MakeNumbers", "function")
    check_payload(payload, read_metadata(metadata, "x"), None, "x")
    with pytest.raises(PayloadError, match="fails its integrity check"):
        check_payload(payload + b"!", read_metadata(metadata, "x"), None, "x")


def test_v3_payloads_are_signed_and_the_signature_is_required() -> None:
    payload, metadata = _fixture_payload("FnChainV3", "MakeNumbers", "arguments")
    key = _public_key("chain", "MakeNumbers")
    meta = read_metadata(metadata, "x")
    assert meta.asymmetric_signature
    check_payload(payload, meta, key, "x")
    with pytest.raises(PayloadError, match="fails its integrity check"):
        check_payload(payload[:-1] + b"\x00", meta, key, "x")
    other = _public_key("raise", "Refuse")
    with pytest.raises(PayloadError):
        check_payload(payload, meta, other, "x")  # another pipeline's key
    unsigned = read_metadata(metadata_json(payload, "3.11.7"), "x")
    with pytest.raises(PayloadError, match="no asymmetric_signature"):
        check_payload(payload, unsigned, key, "x")
    assert not verify_p256(key, payload, "bm90IGEgc2lnbmF0dXJl")
    assert not verify_p256(
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", payload, ""
    )


def test_hmac_payloads_of_older_2x_releases() -> None:
    payload, secret = b"payload", "0f" * 32
    digest = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    meta = read_metadata(json.dumps({"sha256_hash": digest, "version": "2023-04-24", "serialization_module": "cloudpickle"}).encode(), "x")  # fmt: skip
    check_payload(payload, meta, secret, "x")
    with pytest.raises(PayloadError):
        check_payload(payload, meta, "1f" * 32, "x")


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"{", "is not JSON"),
        (b"{}", "has no sha256_hash"),
        (
            b'{"sha256_hash": "a", "version": "1999", "serialization_module": "cloudpickle"}',
            "not supported",
        ),
    ],
)
def test_bad_metadata(data: bytes, says: str) -> None:
    with pytest.raises(PayloadError, match=says):
        read_metadata(data, "s3://b/x")


def test_metadata_and_results_json_are_the_sdk_s() -> None:
    written = json.loads(metadata_json(b"abc", "3.11.7"))
    assert written == {
        "sha256_hash": hashlib.sha256(b"abc").hexdigest(),
        "version": "2023-04-24",
        "python_version": "3.11.7",
        "serialization_module": "cloudpickle",
    }
    assert results_json({"a": [1]}) == '{"Result": {"a": [1]}, "Exception": null}'
    assert json.loads(results_json({1, 2})) == {
        "Result": None,
        "Exception": "The function return ({1, 2}) is not JSON serializable.",
    }
