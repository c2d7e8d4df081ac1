"""The SageMaker SDK's function-step (``@step``) formats: what a step names, where its payloads
live, and how they are checked. Pure: bytes and strings in, no store.

A ``@step`` function compiles to a Training step whose container runs the SDK's bootstrap
(``/opt/ml/input/data/sagemaker_remote_function_bootstrap/job_driver.sh``) and then the SDK's
``invoke_function`` with ContainerArguments such as ``--s3_base_uri``, ``--pipeline_step_name``,
``--func_step_s3_dir`` and ``--property_references`` (key, value pairs). Objects in S3:

- ``<s3_base_uri>/<step>/<func_step_s3_dir>/function/{payload.pkl,metadata.json}``
- ``<s3_base_uri>/<step>/<func_step_s3_dir>/arguments/{payload.pkl,metadata.json}``
- ``<s3_base_uri>/<step>/<func_step_s3_dir>/pre_exec_script_and_dependencies/`` (a channel)
- the step's ``OutputDataConfig.S3OutputPath``: ``{payload.pkl,metadata.json[,results.json]}``,
  the return value (2.x: ``<s3_base_uri>/<execution id>/<step>/results``, 3.x:
  ``<s3_base_uri>/<step>/<func_step_s3_dir>/<execution id>/results``)
- ``<s3_base_uri>/<execution id>/<step>/exception/{payload.pkl,metadata.json}``

``metadata.json`` holds the payload's SHA-256 (``sha256_hash``); SDK 3.x adds an ECDSA P-256
signature (``asymmetric_signature``) of the function and arguments, verified with the public key
it puts in the step's ``REMOTE_FUNCTION_SECRET_KEY`` variable; some 2.x releases put a hex
secret there instead and hashed with HMAC-SHA256. Results and exceptions carry the plain hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Any

from sagepipe.errors import DefinitionError, ExecutionError
from sagepipe.records import record

BOOTSTRAP_CHANNEL = "sagemaker_remote_function_bootstrap"
DEPENDENCIES_CHANNEL = "pre_exec_script_and_dependencies"
ENTRYPOINT_SCRIPT = f"/opt/ml/input/data/{BOOTSTRAP_CHANNEL}/job_driver.sh"
FUNCTION_FOLDER = "function"
ARGUMENTS_FOLDER = "arguments"
RESULTS_FOLDER = "results"
EXCEPTION_FOLDER = "exception"
PAYLOAD = "payload.pkl"
METADATA = "metadata.json"
RESULTS_JSON = "results.json"
RESULT_KEY = "Result"
METADATA_VERSION = "2023-04-24"
SERIALIZATION_MODULE = "cloudpickle"
KEY_VARIABLE = "REMOTE_FUNCTION_SECRET_KEY"
RETURN_REFERENCE = re.compile(r"^Steps\.([A-Za-z0-9\-_]+)\.OutputDataConfig\.S3OutputPath$")


class PayloadError(ExecutionError):
    """A function-step payload that is missing, corrupt or tampered with."""


@record
class FunctionStep:
    """The invoke contract of one function step, read from its resolved ContainerArguments."""

    s3_base_uri: str
    region: str
    client_python_version: str
    step_name: str
    execution_id: str
    build_dir: str
    output_path: str
    property_references: dict[str, str] = field(default_factory=dict)
    serialize_output_to_json: bool = False
    dependency_file: str | None = None
    client_sdk_version: str | None = None
    job_conda_env: str | None = None

    def payload_uri(self, folder: str) -> str:
        """Where the SDK put the function (``function``) or its arguments (``arguments``)."""
        return s3_path_join(self.s3_base_uri, self.step_name, self.build_dir, folder)

    @property
    def results_uri(self) -> str:
        """Where the step's return value goes (its OutputDataConfig.S3OutputPath)."""
        return self.output_path

    @property
    def exception_uri(self) -> str:
        """Where the exception the function raised goes."""
        return s3_path_join(self.s3_base_uri, self.execution_id, self.step_name, EXCEPTION_FOLDER)

    def returns_read(self) -> dict[str, str]:
        """Step name -> results URI of every function whose return value is an argument."""
        found = {}
        for key, value in self.property_references.items():
            match = RETURN_REFERENCE.match(key)
            if match:
                found[match.group(1)] = value
        return found


def s3_path_join(*parts: str) -> str:
    """Join URI parts with single slashes, as the SDK's ``s3_path_join`` does (empty parts go)."""
    kept = [p for p in parts if p]
    if not kept:
        return ""
    first, rest = kept[0], kept[1:]
    scheme = ""
    if first.startswith("s3://"):
        scheme, first = "s3://", first[5:]
    pieces = [first.strip("/"), *(p.strip("/") for p in rest)]
    return scheme + "/".join(p for p in pieces if p)


def is_function_step(arguments: Mapping[str, Any]) -> bool:
    """Whether a Training step's arguments are a ``@step`` function's.

    The signal is the SDK's container entrypoint (its bootstrap channel's ``job_driver.sh``)
    together with ``--s3_base_uri`` among the container arguments: both are fixed by the SDK
    for every function step (2.x and 3.x) and mean nothing to any other training image.
    """
    algo = arguments.get("AlgorithmSpecification")
    if not isinstance(algo, Mapping):
        return False
    entry = algo.get("ContainerEntrypoint")
    args = algo.get("ContainerArguments")
    if not isinstance(entry, Sequence) or not isinstance(args, Sequence):
        return False
    return ENTRYPOINT_SCRIPT in [str(e) for e in entry] and "--s3_base_uri" in args


def client_python(arguments: Mapping[str, Any]) -> str | None:
    """The Python minor version the client pickled with (``--client_python_version``)."""
    argv = arguments["AlgorithmSpecification"]["ContainerArguments"]
    for name, value in itertools.pairwise(argv):
        if name == "--client_python_version" and isinstance(value, str):
            return ".".join(value.strip().split(".")[:2])
    return None


def python_mismatch(
    arguments: Mapping[str, Any], image: str, image_python: str | None
) -> str | None:
    """Why SageMaker's bootstrap would refuse the step on an image of ``image_python``, or None."""
    client = client_python(arguments)
    if client is None or image_python is None or image_python == client:
        return None
    return (
        f"the function was pickled on Python {client} but image {image} has Python "
        f"{image_python} (SageMaker fails this job); build the pipeline on Python "
        f"{image_python}, or give @step(image_uri=...) an image with Python {client}"
    )


def parse_function_step(arguments: Mapping[str, Any], where: str) -> FunctionStep:
    """The invoke contract from a function step's resolved arguments.

    Raises:
        DefinitionError: a required argument is missing, or a value is not a string.
    """
    argv = arguments["AlgorithmSpecification"]["ContainerArguments"]
    options: dict[str, str] = {}
    references: dict[str, str] = {}
    i = 0
    while i < len(argv):
        name = str(argv[i])
        if name == "--property_references":
            rest = [str(v) for v in argv[i + 1 :]]
            end = next((j for j, v in enumerate(rest) if v.startswith("--")), len(rest))
            pairs = rest[:end]
            if len(pairs) % 2:
                raise DefinitionError(f"{where}: --property_references needs key, value pairs")
            references = dict(zip(pairs[::2], pairs[1::2], strict=True))
            i += 1 + end
            continue
        if name.startswith("--") and i + 1 < len(argv):
            options[name[2:]] = str(argv[i + 1])
            i += 2
            continue
        i += 1
    missing = [
        k
        for k in ("s3_base_uri", "client_python_version", "pipeline_step_name", "func_step_s3_dir")
        if k not in options
    ]
    if missing:
        raise DefinitionError(f"{where}: function step without --{', --'.join(missing)}")
    return FunctionStep(
        s3_base_uri=options["s3_base_uri"],
        region=options.get("region", ""),
        client_python_version=options["client_python_version"],
        step_name=options["pipeline_step_name"],
        execution_id=options.get("pipeline_execution_id", ""),
        build_dir=options["func_step_s3_dir"],
        output_path=str((arguments.get("OutputDataConfig") or {}).get("S3OutputPath", "")),
        property_references=references,
        serialize_output_to_json=options.get("serialize_output_to_json", "").lower() == "true",
        dependency_file=_dependency_file(options.get("dependency_settings"), where),
        client_sdk_version=options.get("client_sagemaker_pysdk_version"),
        job_conda_env=options.get("job_conda_env"),
    )


def _dependency_file(settings: str | None, where: str) -> str | None:
    if not settings:
        return None
    try:
        value = json.loads(settings).get("dependency_file")
    except (ValueError, AttributeError):
        raise DefinitionError(f"{where}: --dependency_settings is not JSON: {settings}") from None
    return str(value) if value else None


@record
class Metadata:
    """A payload's ``metadata.json``."""

    sha256_hash: str
    python_version: str = ""
    asymmetric_signature: str | None = None


def read_metadata(data: bytes, where: str) -> Metadata:
    """Parse ``metadata.json`` as the SDK does (version 2023-04-24, cloudpickle).

    Raises:
        PayloadError: not JSON, no hash, or another serialization approach.
    """
    try:
        obj = json.loads(data)
    except ValueError:
        raise PayloadError(f"{where}/{METADATA} is not JSON") from None
    if not isinstance(obj, dict) or not obj.get("sha256_hash"):
        raise PayloadError(f"{where}/{METADATA} has no sha256_hash")
    if obj.get("version") != METADATA_VERSION or obj.get("serialization_module") != (
        SERIALIZATION_MODULE
    ):
        raise PayloadError(f"{where}/{METADATA}: serialization {obj!r} is not supported")
    signature = obj.get("asymmetric_signature")
    return Metadata(
        str(obj["sha256_hash"]),
        str(obj.get("python_version") or ""),
        str(signature) if signature else None,
    )


def metadata_json(payload: bytes, python_version: str) -> bytes:
    """``metadata.json`` for ``payload`` as the SDK writes a job's results (plain SHA-256)."""
    return json.dumps(
        {
            "sha256_hash": hashlib.sha256(payload).hexdigest(),
            "version": METADATA_VERSION,
            "python_version": python_version,
            "serialization_module": SERIALIZATION_MODULE,
        }
    ).encode()


def check_payload(payload: bytes, metadata: Metadata, key: str | None, where: str) -> None:
    """Refuse a payload whose metadata does not vouch for it.

    ``key`` is the step's ``REMOTE_FUNCTION_SECRET_KEY``: a PEM public key (SDK 3.x, the
    signature is required), a hex secret (HMAC-SHA256, some 2.x releases), or None (the plain
    SHA-256 of 2.x and of every job-written result).

    Raises:
        PayloadError: the payload was changed after the SDK wrote it.
    """
    tampered = PayloadError(
        f"{where}/{PAYLOAD} fails its integrity check against {METADATA}: it was changed after "
        "the SDK wrote it; rebuild the pipeline definition and restrict write access to the bucket"
    )
    if key and "BEGIN PUBLIC KEY" in key:
        if metadata.asymmetric_signature is None:
            raise PayloadError(f"{where}/{METADATA} has no asymmetric_signature; {tampered}")
        if not verify_p256(key, payload, metadata.asymmetric_signature):
            raise tampered
        return
    if key:
        digest = hmac.new(key.encode(), payload, hashlib.sha256).hexdigest()
        if hmac.compare_digest(digest, metadata.sha256_hash):
            return
    if not hmac.compare_digest(hashlib.sha256(payload).hexdigest(), metadata.sha256_hash):
        raise tampered


def results_json(value: Any) -> str:
    """``results.json`` for a return value, as the SDK writes it for JsonGet readers."""
    try:
        return json.dumps({RESULT_KEY: value, "Exception": None})
    except TypeError as exc:
        if "is not JSON serializable" not in str(exc):
            raise
        message = f"The function return ({value}) is not JSON serializable."
        return json.dumps({RESULT_KEY: None, "Exception": message})


# ECDSA P-256 (SECP256R1) signature verification with SHA-256, for SDK 3.x payloads.
_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_A = _P - 3
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)
Point = tuple[int, int] | None


def _add(p: Point, q: Point) -> Point:
    if p is None:
        return q
    if q is None:
        return p
    if p[0] == q[0] and (p[1] + q[1]) % _P == 0:
        return None
    if p == q:
        slope = (3 * p[0] * p[0] + _A) * pow(2 * p[1], -1, _P) % _P
    else:
        slope = (q[1] - p[1]) * pow(q[0] - p[0], -1, _P) % _P
    x = (slope * slope - p[0] - q[0]) % _P
    return x, (slope * (p[0] - x) - p[1]) % _P


def _multiply(k: int, point: Point) -> Point:
    result: Point = None
    while k:
        if k & 1:
            result = _add(result, point)
        point = _add(point, point)
        k >>= 1
    return result


def _der_items(data: bytes, offset: int = 0) -> list[tuple[int, bytes]]:
    """The (tag, value) items of a DER sequence's content."""
    items = []
    while offset < len(data):
        tag, length = data[offset], data[offset + 1]
        offset += 2
        if length & 0x80:
            size = length & 0x7F
            length = int.from_bytes(data[offset : offset + size], "big")
            offset += size
        items.append((tag, data[offset : offset + length]))
        offset += length
    return items


def _public_point(pem: str) -> tuple[int, int]:
    body = "".join(line for line in pem.strip().splitlines() if "-----" not in line)
    der = base64.b64decode(body)
    ((_, spki),) = _der_items(der)
    _algorithm, (tag, bits) = _der_items(spki)
    if tag != 0x03 or len(bits) != 66 or bits[1] != 0x04:
        raise ValueError("not an uncompressed P-256 public key")
    return int.from_bytes(bits[2:34], "big"), int.from_bytes(bits[34:66], "big")


def verify_p256(public_key_pem: str, message: bytes, signature_b64: str) -> bool:
    """Whether ``signature_b64`` (DER, base64) signs ``message`` under the P-256 key."""
    try:
        point = _public_point(public_key_pem)
        ((_, sequence),) = _der_items(base64.b64decode(signature_b64))
        (_, r_bytes), (_, s_bytes) = _der_items(sequence)
    except (ValueError, IndexError, TypeError):
        return False
    r, s = int.from_bytes(r_bytes, "big"), int.from_bytes(s_bytes, "big")
    if not (0 < r < _N and 0 < s < _N):
        return False
    z = int.from_bytes(hashlib.sha256(message).digest(), "big")
    w = pow(s, -1, _N)
    found = _add(_multiply(z * w % _N, _G), _multiply(r * w % _N, point))
    return found is not None and found[0] % _N == r
