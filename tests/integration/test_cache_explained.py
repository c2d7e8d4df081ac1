"""Cache decisions explained, the data-change warning, --refresh and --no-cache: real runs."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from sagepipe import (
    CacheConfig,
    ParameterString,
    Pipeline,
    ProcessingInput,
    ProcessingOutput,
    ProcessingStep,
    Processor,
)
from sagepipe.config import Settings
from sagepipe.definition import compile_pipeline
from sagepipe.engine.caching import CachePolicy
from sagepipe.engine.execution import LocalExecution
from sagepipe.engine.factory import build_engine, upload_code
from sagepipe.engine.history import History
from sagepipe.errors import UsageError
from sagepipe.storage import LocalStore
from tests.integration.helpers import run, sandbox
from tests.unprivileged import rerun_as_ordinary_user

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
PROC = Processor(image_uri=IMAGE)
IN = "/opt/ml/processing/input/data"
OUT = "/opt/ml/processing/o"
DATA = "s3://test-bucket/in/data.csv"
CACHE = CacheConfig(True, "P1D")

# Paths come as arguments: the process sandbox rewrites /opt/ml there (and only there).
COPY = """
import os, shutil, sys
src, out = sys.argv[1], sys.argv[2]
for name in sorted(os.listdir(src)):
    shutil.copy(os.path.join(src, name), os.path.join(out, name))
if sys.argv[3:] and sys.argv[3] == 'check':
    text = open(os.path.join(src, 'data.csv')).read()
    if 'bad' in text:
        sys.exit('ERROR: the data says bad')
print('copied', *sys.argv[3:])
"""


def script(folder: Path, body: str = COPY, name: str = "copy.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(body)
    return path


def copy_step(
    name: str, code: Path, args: list[Any] | None = None, source: Any = DATA, **kw: Any
) -> ProcessingStep:
    return ProcessingStep(
        name,
        processor=PROC,
        code=str(code),
        inputs=[ProcessingInput(source, IN, input_name="data")],
        outputs=[ProcessingOutput(OUT, output_name="o")],
        job_arguments=[IN, OUT, *(args or [])],
        cache_config=kw.pop("cache_config", CACHE),
        **kw,
    )


def decisions(settings: Settings, execution: LocalExecution) -> dict[str, dict[str, Any]]:
    return History(settings.history_path).cache_decisions(execution.execution_id)


def run_with(settings: Settings, pipeline: Pipeline, policy: CachePolicy) -> LocalExecution:
    """Run with a cache policy, as `sagepipe run --refresh/--no-cache` does."""
    engine = build_engine(settings, sandbox("process"))
    compiled = compile_pipeline(pipeline, bucket=settings.bucket)
    upload_code(compiled, engine.store)
    prepared = engine.prepare(compiled.definition, pipeline.name, {})
    prepared.cache = policy
    execution = LocalExecution(engine, prepared).start()
    execution.wait(300)
    return execution


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings; as an ordinary user (root's image cache is not theirs), steps run
    on the host interpreter."""
    if os.geteuid() == 0:
        return settings
    return settings.with_overrides(images={"sagemaker-scikit-learn": "host"})


@pytest.fixture
def store(settings: Settings) -> LocalStore:
    s = LocalStore(settings.local_store_root)
    s.put(DATA, b"a,b\n1,2\n")
    return s


def test_a_changed_script_is_named(settings: Settings, store: LocalStore, tmp_path: Path) -> None:
    code = script(tmp_path / "src")
    first = run(settings, Pipeline("p", steps=[copy_step("a", code)]), "process")
    assert decisions(settings, first)["a"] == {"Result": "miss", "Reason": "no earlier run"}
    second = run(settings, Pipeline("p", steps=[copy_step("a", code)]), "process")
    hit = decisions(settings, second)["a"]
    assert hit["Result"] == "hit" and hit["SourceExecutionId"] == first.execution_id
    assert "Warnings" not in hit
    code.write_text(COPY + "\nprint('changed')\n")
    third = run(settings, Pipeline("p", steps=[copy_step("a", code)]), "process")
    miss = decisions(settings, third)["a"]
    assert miss["Result"] == "miss"
    # compared with the most recent earlier run (the hit), which names the same fields
    assert (
        miss["Reason"] == f"changed since execution {second.execution_id}: script copy.py changed"
    )


def test_a_changed_parameter_is_named_old_to_new(
    settings: Settings, store: LocalStore, tmp_path: Path
) -> None:
    mode = ParameterString("Mode", default_value="fast")
    p = Pipeline("p", steps=[copy_step("a", script(tmp_path), ["--mode", mode])], parameters=[mode])
    first = run(settings, p, "process")
    second = run(settings, p, "process", parameters={"Mode": "slow"})
    reason = decisions(settings, second)["a"]["Reason"]
    assert reason == f"changed since execution {first.execution_id}: parameter Mode fast → slow"
    assert statuses_of(second) == {"a": "Succeeded"}


def test_changed_data_at_the_same_uri_hits_with_a_warning(
    settings: Settings, store: LocalStore, tmp_path: Path
) -> None:
    extra = "s3://test-bucket/in/data.csv.extra"  # the S3Prefix names both objects
    store.put(extra, b"x\n")
    p = Pipeline("p", steps=[copy_step("a", script(tmp_path))])
    first = run(settings, p, "process")
    store.put(DATA, b"a,b\n1,2\n")  # rewritten with the same bytes: not a change
    same = decisions(settings, run(settings, p, "process"))["a"]
    assert same["Result"] == "hit" and "Warnings" not in same
    store.put(DATA, b"a,b\n3,4\n")
    lines: list[tuple[str, str]] = []
    second = run(settings, p, "process", lines=lines)
    hit = decisions(settings, second)["a"]
    assert hit["Result"] == "hit" and hit["SourceExecutionId"] == first.execution_id
    (warning,) = hit["Warnings"]
    assert f"{DATA} (changed)" in warning and extra not in warning
    assert "--refresh a" in warning
    assert ("a", f"warning: {warning}") in lines
    # the hit reused the first run's outputs, computed from the old data
    out = f"s3://test-bucket/other/outputs/p/{first.execution_id}/a/o/data.csv"
    assert store.get(out) == b"a,b\n1,2\n"


def test_a_deleted_input_object_is_named(
    settings: Settings, store: LocalStore, tmp_path: Path
) -> None:
    extra = "s3://test-bucket/in/data.csv.extra"
    store.put(extra, b"x\n")
    p = Pipeline("p", steps=[copy_step("a", script(tmp_path))])
    run(settings, p, "process")
    store.delete(extra)
    (warning,) = decisions(settings, run(settings, p, "process"))["a"]["Warnings"]
    assert f"{extra} (deleted)" in warning and f"{DATA} " not in warning


def test_refresh_reruns_only_that_step(
    settings: Settings, store: LocalStore, tmp_path: Path
) -> None:
    code = script(tmp_path)
    a = copy_step("a", code)
    b = copy_step("b", code, source=a.properties.ProcessingOutputConfig.Outputs["o"].S3Output.S3Uri)
    c = copy_step("c", code, ["other"])
    p = Pipeline("p", steps=[a, b, c])
    run(settings, p, "process")
    compiled = compile_pipeline(p, bucket=settings.bucket)
    with pytest.raises(UsageError, match="--refresh nope: no such step; steps are: a, b, c"):
        CachePolicy.build(compiled.definition, ["a,nope"], False)
    both = CachePolicy.build(compiled.definition, ["a, b", "c"], False)
    assert both.refresh == {"a", "b", "c"} and not both.disabled
    policy = CachePolicy.build(compiled.definition, ["a"], False)
    second = run_with(settings, p, policy)
    got = decisions(settings, second)
    assert got["a"] == {"Result": "miss", "Reason": "refreshed (--refresh)"}
    # b reads a's output, whose URI names the execution: it runs again too
    assert got["b"]["Result"] == "miss" and got["b"]["Reason"].endswith(
        "input data: step a ran again"
    )
    assert got["c"]["Result"] == "hit"
    off = run_with(settings, p, CachePolicy(disabled=True))
    assert {d["Reason"] for d in decisions(settings, off).values()} == {
        "cache disabled for this run (--no-cache)"
    }
    assert all(
        s["StepStatus"] == "Succeeded" and "CacheHitResult" not in s for s in off.list_steps()
    )


def test_expired_and_disabled(settings: Settings, store: LocalStore, tmp_path: Path) -> None:
    code = script(tmp_path)
    p = Pipeline(
        "p",
        steps=[
            copy_step("short", code, cache_config=CacheConfig(True, "PT1S")),
            copy_step("never", code, cache_config=CacheConfig(False)),
        ],
    )
    first = run(settings, p, "process")
    time.sleep(1.2)  # past ExpireAfter
    got = decisions(settings, run(settings, p, "process"))
    assert got["short"]["Result"] == "miss"
    assert got["short"]["Reason"].startswith(f"expired: the run of execution {first.execution_id}")
    assert got["short"]["Reason"].endswith("is older than ExpireAfter PT1S")
    assert got["never"] == {"Result": "off", "Reason": "cache disabled for this step"}


def test_a_failed_run_is_never_cited(settings: Settings, store: LocalStore, tmp_path: Path) -> None:
    store.put(DATA, b"bad\n")
    p = Pipeline("p", steps=[copy_step("a", script(tmp_path), ["check"])])
    failed = run(settings, p, "process")
    assert statuses_of(failed) == {"a": "Failed"}
    store.put(DATA, b"good\n")
    second = run(settings, p, "process")
    got = decisions(settings, second)["a"]
    assert got["Result"] == "miss" and "SourceExecutionId" not in got
    assert got["Reason"] == (
        f"the run of execution {failed.execution_id} with these arguments did not succeed (Failed)"
    )
    assert statuses_of(second) == {"a": "Succeeded"}
    third = decisions(settings, run(settings, p, "process"))["a"]
    assert third["SourceExecutionId"] == second.execution_id


def test_a_huge_parameter_is_shown_cut(
    settings: Settings, store: LocalStore, tmp_path: Path
) -> None:
    env_value = ParameterString("Blob", default_value="x")
    step = copy_step("a", script(tmp_path), ["--blob", env_value])
    p = Pipeline("p", steps=[step], parameters=[env_value])
    run(settings, p, "process")
    huge = "y" * 200_000
    second = run(settings, p, "process", parameters={"Blob": huge})
    reason = decisions(settings, second)["a"]["Reason"]
    assert "parameter Blob x → yyyy" in reason and "(200000 chars)" in reason
    assert len(reason) < 300


def test_a_symlinked_input_object_is_never_read(
    settings: Settings, store: LocalStore, tmp_path: Path
) -> None:
    secret = tmp_path / "outside.txt"
    secret.write_text("not the store's\n")
    link = settings.local_store_root / "test-bucket" / "in" / "link.csv"
    os.symlink(secret, link)
    p = Pipeline(
        "p", steps=[copy_step("a", script(tmp_path), source="s3://test-bucket/in/link.csv")]
    )
    execution = run(settings, p, "process")
    history = History(settings.history_path)
    recorded = history.step_inputs(execution.execution_id, "a") or {}
    assert recorded["s3://test-bucket/in/link.csv"].hash == ""  # not hashed: not followed
    # staging refuses the link as well: the step fails saying why, nothing outside leaked
    assert statuses_of(execution) == {"a": "Failed"}
    reason = execution.list_steps()[0]["FailureReason"]
    assert reason.startswith("input s3://test-bucket/in/link.csv is a symbolic link")
    assert "not the store's" not in (history.step_log(execution.execution_id, "a") or "")


def statuses_of(execution: LocalExecution) -> dict[str, str]:
    return {s["StepName"]: s["StepStatus"] for s in execution.list_steps()}


def test_the_same_holds_for_an_ordinary_user() -> None:
    """Run this module again as uid 1000 (CI runs as root): fingerprints, links, warnings."""
    rerun_as_ordinary_user([__file__])


def test_a_malformed_expire_after_fails_the_step_naming_it(
    settings: Settings, store: LocalStore, tmp_path: Path
) -> None:
    step = copy_step("a", script(tmp_path), cache_config=CacheConfig(True, "30 days"))
    execution = run(settings, Pipeline("p", steps=[step]), "process")
    (entry,) = execution.list_steps()
    assert entry["StepStatus"] == "Failed"
    assert "ExpireAfter '30 days' is not an ISO 8601 duration" in entry["FailureReason"]
