"""Content-addressed code is verified before it runs, and no step may write into it.

Code lives at ``app/<pipeline>/code/<sha256>/<file>``: the key names the bytes it must hold. An
object changed after upload (by hand, or by a step whose output pointed there) is refused when a
step stages it, the next compile uploads it afresh, and an output bound for a code prefix fails
its step before anything reaches the store — on the local store and on S3.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sagepipe import Pipeline, ProcessingInput, ProcessingOutput, ProcessingStep, Processor
from sagepipe.config import Settings
from sagepipe.definition import compile_pipeline
from sagepipe.engine.factory import build_engine, start_definition, upload_code
from sagepipe.storage import ObjectStore
from tests.integration.helpers import SCRIPTS, sandbox, statuses

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
HELLO = SCRIPTS / "hello.py"


def _settings(request: pytest.FixtureRequest, project: Path, image_cache: Path) -> Settings:
    env = {"SAGEPIPE_CACHE_DIR": str(image_cache)}
    if request.param == "s3":
        seaweed = request.getfixturevalue("seaweed")
        env.update(seaweed.env(), SAGEPIPE_STORE="s3", SAGEPIPE_BUCKET="integrity")
    else:
        env["SAGEPIPE_BUCKET"] = "integrity"
    return Settings.from_env(cwd=project, environ=env)


@pytest.fixture(params=["local", "s3"])
def store_settings(request: pytest.FixtureRequest, project: Path, image_cache: Path) -> Settings:
    return _settings(request, project, image_cache)


def _code_uri(pipeline: str, source: Path) -> str:
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    return f"s3://integrity/app/{pipeline}/code/{digest}/{source.name}"


def _hello(name: str = "hello") -> ProcessingStep:
    return ProcessingStep(
        name,
        processor=Processor(image_uri=IMAGE),
        code="hello.py",
        outputs=[ProcessingOutput("/opt/ml/processing/o", output_name="o")],
    )


def _start(
    settings: Settings, pipeline: Pipeline, upload: bool = True
) -> tuple[str, dict[str, str], ObjectStore]:
    engine = build_engine(settings, sandbox("process"))
    engine.store.ensure_bucket("integrity")
    compiled = compile_pipeline(pipeline, bucket="integrity", base_dir=SCRIPTS)
    if upload:
        upload_code(compiled, engine.store)
    execution = start_definition(engine, compiled.definition, pipeline.name, {})
    status = execution.wait(120)
    reason = str(execution.describe().get("FailureReason", ""))
    return status, {"reason": reason, **statuses(execution)}, engine.store


def test_a_tampered_code_object_is_refused_and_the_next_compile_restores_it(
    store_settings: Settings,
) -> None:
    pipeline = Pipeline("tamper", steps=[_hello()])
    status, seen, store = _start(store_settings, pipeline)
    assert status == "Succeeded", seen["reason"]
    uri = _code_uri("tamper", HELLO)
    store.put(uri, b"print('not the code that was compiled')\n")

    # A definition that names the object runs without compiling again: refused, naming it.
    engine = build_engine(store_settings, sandbox("process"))
    compiled = compile_pipeline(pipeline, bucket="integrity", base_dir=SCRIPTS)
    execution = start_definition(engine, compiled.definition, "tamper", {})
    assert execution.wait(120) == "Failed"
    reason = str(execution.describe()["FailureReason"])
    assert uri in reason and "does not match its content hash" in reason
    assert statuses(execution) == {"hello": "Failed"}

    # Compiling again plans the mismatched object for upload; the run then succeeds.
    status, seen, store = _start(store_settings, pipeline)
    assert status == "Succeeded", seen["reason"]
    assert store.get(uri) == HELLO.read_bytes()


def test_a_code_object_under_another_name_is_not_checked(store_settings: Settings) -> None:
    """Only keys of the content-addressed form carry a hash; other app/ objects run as they are."""
    engine = build_engine(store_settings, sandbox("process"))
    engine.store.ensure_bucket("integrity")
    engine.store.put("s3://integrity/app/src/hello.py", HELLO.read_bytes())
    step = ProcessingStep(
        "plain",
        processor=Processor(image_uri=IMAGE, command=("python3",)),
        inputs=[
            ProcessingInput("s3://integrity/app/src/hello.py", "/opt/ml/processing/input/code")
        ],
        job_arguments=["/opt/ml/processing/input/code/hello.py"],
    )
    compiled = compile_pipeline(Pipeline("plainapp", steps=[step]), bucket="integrity")
    execution = start_definition(engine, compiled.definition, "plainapp", {})
    assert execution.wait(120) == "Succeeded", execution.describe().get("FailureReason")


@pytest.mark.parametrize(
    "destination",
    [
        "s3://integrity/app/victim/code",
        "s3://integrity/app/victim/code/",
        "s3://integrity/app/victim/code/" + "0" * 64,
        "s3://integrity/app/outputs-into-parent",  # files land under .../code/ below it
    ],
)
def test_an_output_into_a_code_prefix_is_refused(
    store_settings: Settings, destination: str
) -> None:
    victim = _code_uri("victim", HELLO)
    engine = build_engine(store_settings, sandbox("process"))
    engine.store.ensure_bucket("integrity")
    engine.store.put(victim, HELLO.read_bytes())
    if destination.endswith("outputs-into-parent"):
        destination = "s3://integrity/app"
        rel = victim.removeprefix("s3://integrity/app/")
    else:
        rel = "0" * 64 + "/hello.py"
    code = (
        "import os, sys; p = '/opt/ml/processing/o/' + sys.argv[1]; "
        "os.makedirs(os.path.dirname(p), exist_ok=True); open(p, 'w').write('evil')"
    )
    step = ProcessingStep(
        "overwrite",
        processor=Processor(image_uri=IMAGE, command=("python3", "-c", code)),
        job_arguments=[rel],
        outputs=[
            ProcessingOutput("/opt/ml/processing/o", destination=destination, output_name="o")
        ],
    )
    compiled = compile_pipeline(Pipeline("attacker", steps=[step]), bucket="integrity")
    execution = start_definition(engine, compiled.definition, "attacker", {})
    assert execution.wait(120) == "Failed"
    reason = str(execution.describe()["FailureReason"])
    assert "points into the code prefix" in reason
    assert engine.store.get(victim) == HELLO.read_bytes()
    keys = [i.key for i in engine.store.list("s3://integrity/app/") if not i.is_folder]
    assert all("evil" not in engine.store.get(f"s3://integrity/{k}").decode() for k in keys)


def _write_step(destination: str, code: str, rel: str) -> ProcessingStep:
    return ProcessingStep(
        "overwrite",
        processor=Processor(image_uri=IMAGE, command=("python3", "-c", code)),
        job_arguments=[rel],
        outputs=[
            ProcessingOutput("/opt/ml/processing/o", destination=destination, output_name="o")
        ],
    )


@pytest.mark.parametrize(
    "destination",
    ["s3://integrity/app//victim/code/", "s3://integrity/app/victim//code", "s3://integrity//app"],
)
def test_an_output_into_a_code_prefix_through_empty_segments_is_refused(
    store_settings: Settings, destination: str
) -> None:
    """The local store joins ``app//victim`` as ``app/victim``: such a URI is the code prefix."""
    victim = _code_uri("victim", HELLO)
    engine = build_engine(store_settings, sandbox("process"))
    engine.store.ensure_bucket("integrity")
    engine.store.put(victim, HELLO.read_bytes())
    rel = victim.removeprefix("s3://integrity/app/").split("/code/", 1)[1]
    if destination.endswith("//app"):
        rel = "victim/code/" + rel
    code = (
        "import os, sys; p = '/opt/ml/processing/o/' + sys.argv[1]; "
        "os.makedirs(os.path.dirname(p), exist_ok=True); open(p, 'w').write('evil')"
    )
    step = _write_step(destination, code, rel)
    compiled = compile_pipeline(Pipeline("attacker", steps=[step]), bucket="integrity")
    execution = start_definition(engine, compiled.definition, "attacker", {})
    assert execution.wait(120) == "Failed"
    assert "points into the code prefix" in str(execution.describe()["FailureReason"])
    assert engine.store.get(victim) == HELLO.read_bytes()


def test_an_empty_folder_output_into_a_code_prefix_is_refused(store_settings: Settings) -> None:
    """An empty folder is published as a folder marker: it may not land in a code prefix either
    (in the local store a folder where a code file is to go blocks its upload)."""
    engine = build_engine(store_settings, sandbox("process"))
    engine.store.ensure_bucket("integrity")
    digest = hashlib.sha256(HELLO.read_bytes()).hexdigest()
    code = "import os, sys; os.makedirs('/opt/ml/processing/o/' + sys.argv[1])"
    step = _write_step("s3://integrity/app", code, f"spared/code/{digest}/hello.py")
    compiled = compile_pipeline(Pipeline("attacker", steps=[step]), bucket="integrity")
    execution = start_definition(engine, compiled.definition, "attacker", {})
    assert execution.wait(120) == "Failed"
    assert "points into the code prefix" in str(execution.describe()["FailureReason"])
    assert list(engine.store.list("s3://integrity/app/spared/")) == []


def test_a_link_planted_in_the_local_code_prefix_fails_the_step_in_one_line(
    project: Path, image_cache: Path, tmp_path: Path
) -> None:
    """A symlink where a code object should be is never followed: the step fails saying so,
    and nothing outside the store (here a file with the very bytes of the code) is read."""
    settings = Settings.from_env(
        cwd=project,
        environ={"SAGEPIPE_CACHE_DIR": str(image_cache), "SAGEPIPE_BUCKET": "integrity"},
    )
    outside = tmp_path / "outside.py"
    outside.write_bytes(HELLO.read_bytes())
    pipeline = Pipeline("linked", steps=[_hello()])
    engine = build_engine(settings, sandbox("process"))
    compiled = compile_pipeline(pipeline, bucket="integrity", base_dir=SCRIPTS)
    upload_code(compiled, engine.store)
    local = engine.store.local_path(_code_uri("linked", HELLO))
    assert local is not None
    local.unlink()
    local.symlink_to(outside)
    execution = start_definition(engine, compiled.definition, "linked", {})
    assert execution.wait(120) == "Failed"
    reason = str(execution.describe()["FailureReason"])
    assert "symbolic link" in reason and "internal error" not in reason, reason
