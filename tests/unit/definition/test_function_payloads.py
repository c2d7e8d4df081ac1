"""Function step payloads: the SDK's format, addressed by content, readable where the job runs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from sagepipe import ParameterInteger, Pipeline, step
from sagepipe.definition import CompiledPipeline, compile_pipeline
from sagepipe.definition.payloads import read_payload
from sagepipe.errors import PipelineError
from tests.conftest import ROOT

IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/fn-runtime:3.11"
LOCK = threading.Lock()

MODULE = """
from sagepipe import ParameterInteger, Pipeline, step

IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/fn-runtime:3.11"


def helper(x):
    return x + {delta}


@step(name="first", instance_type="ml.m5.large", image_uri=IMAGE)
def first(n: int) -> int:
    return helper(n)


@step(name="second", instance_type="ml.m5.large", image_uri=IMAGE)
def second(value: int) -> list:
    return [value, {body}]


def get_pipeline():
    n = ParameterInteger("N", default_value=1)
    return Pipeline("Edits", steps=[second(first(n))], parameters=[n])
"""

COMPILE = """
import importlib.util, json, sys
sys.dont_write_bytecode = True  # the module is rewritten within a second, at the same size
from pathlib import Path
from sagepipe.definition import compile_pipeline
path = Path(sys.argv[1])
spec = importlib.util.spec_from_file_location(path.stem, path)
module = importlib.util.module_from_spec(spec)
sys.modules[path.stem] = module
spec.loader.exec_module(module)
compiled = compile_pipeline(module.get_pipeline(), bucket="b", base_dir=path.parent)
out = Path(sys.argv[2])
(out / "definition.json").write_text(compiled.definition.dumps())
for upload in compiled.uploads:
    target = out / upload.uri.removeprefix("s3://")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(upload.read())
"""


def run_python(code: str, *args: str, cwd: Path, seed: str = "0") -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": seed}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def compile_module(
    tmp: Path, tag: str, seed: str = "0", folder: Path | None = None, **fill: str
) -> tuple[dict[str, Any], Path]:
    """Compile MODULE (filled with ``fill``) in a fresh interpreter; its definition and objects."""
    folder = folder or tmp / tag
    folder.mkdir(exist_ok=True)
    module = folder / "edits.py"
    module.write_text(MODULE.format(**{"delta": "1", "body": "'x'", **fill}))
    out = tmp / f"out-{tag}"
    out.mkdir()
    run_python(COMPILE, str(module), str(out), cwd=folder, seed=seed)
    return json.loads((out / "definition.json").read_text()), out


def objects(out: Path) -> dict[str, bytes]:
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    del files["definition.json"]
    return files


def by_name(definition: dict[str, Any]) -> dict[str, Any]:
    return {s["Name"]: s for s in definition["Steps"]}


def step_dir(step_json: dict[str, Any]) -> str:
    args = step_json["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
    return str(args[args.index("--func_step_s3_dir") + 1])


def test_recompiling_an_unchanged_pipeline_gives_the_same_json_and_objects(tmp_path: Path) -> None:
    # Two interpreters with different hash seeds: the same definition, the same objects.
    one, out_one = compile_module(tmp_path, "one", seed="1", folder=tmp_path / "project")
    two, out_two = compile_module(tmp_path, "two", seed="2", folder=tmp_path / "project")
    assert one == two
    assert objects(out_one) == objects(out_two)


def test_the_same_project_in_another_folder_gives_the_same_payloads(tmp_path: Path) -> None:
    # File paths in pickled code are written relative to the project (a CI checkout, say).
    one, out_one = compile_module(tmp_path, "here", folder=tmp_path / "here")
    two, out_two = compile_module(tmp_path, "there", folder=tmp_path / "there")
    # Only the default Description (the function's file, as in the SDK) names the folder.
    for step_one, step_two in zip(one["Steps"], two["Steps"], strict=True):
        assert step_one.pop("Description") == str(tmp_path / "here" / "edits.py")
        assert step_two.pop("Description") == str(tmp_path / "there" / "edits.py")
    assert one == two
    assert objects(out_one) == objects(out_two)
    payloads = [v for k, v in objects(out_one).items() if k.endswith("function/payload.pkl")]
    assert payloads and all(str(tmp_path).encode() not in p for p in payloads)


def test_a_changed_function_body_changes_only_its_step(tmp_path: Path) -> None:
    project = tmp_path / "project"
    base, _ = compile_module(tmp_path, "base", folder=project)
    same, _ = compile_module(tmp_path, "same", folder=project)
    edited, _ = compile_module(tmp_path, "edited", folder=project, body="'y'")
    helper, _ = compile_module(tmp_path, "helper", folder=project, delta="2")
    assert by_name(base) == by_name(same)
    assert by_name(edited)["first"] == by_name(base)["first"]
    assert step_dir(by_name(edited)["second"]) != step_dir(by_name(base)["second"])
    # A helper of the module travels in the payload of the function that calls it.
    assert step_dir(by_name(helper)["first"]) != step_dir(by_name(base)["first"])
    assert by_name(helper)["second"] == by_name(base)["second"]


def test_payloads_are_in_the_sdk_format_and_addressed_by_content(tmp_path: Path) -> None:
    definition, out = compile_module(tmp_path, "fmt")
    first = by_name(definition)["first"]
    digest = step_dir(first)
    folder = out / "b" / "other" / "functions" / "Edits" / "first" / digest
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert names == [
        "arguments/metadata.json",
        "arguments/payload.pkl",
        "function/metadata.json",
        "function/payload.pkl",
        "pre_exec_script_and_dependencies/requirements.txt",
    ]
    payload = (folder / "function" / "payload.pkl").read_bytes()
    meta = json.loads((folder / "function" / "metadata.json").read_text())
    assert list(meta) == ["sha256_hash", "version", "python_version", "serialization_module"]
    assert meta["sha256_hash"] == hashlib.sha256(payload).hexdigest()
    assert meta["version"] == "2023-04-24"
    assert meta["serialization_module"] == "cloudpickle"
    assert meta["python_version"] == "{}.{}.{}".format(*sys.version_info[:3])
    requirements = (folder / "pre_exec_script_and_dependencies" / "requirements.txt").read_text()
    assert requirements == "sagemaker>=2.256.0,<3.0.0\n"


FAKE_SDK = """
from dataclasses import dataclass, field
@dataclass
class _Parameter:
    name: str
class _ParameterInteger(_Parameter): ...
class _ParameterFloat(_Parameter): ...
class _ParameterString(_Parameter): ...
class _ParameterBoolean(_Parameter): ...
@dataclass
class _Properties:
    path: str
@dataclass
class _ExecutionVariable:
    name: str
@dataclass
class _DelayedReturn:
    uri: object
    reference_path: tuple = field(default_factory=tuple)
"""

READ = """
import cloudpickle, sys
from pathlib import Path
folder = Path(sys.argv[1])
func = cloudpickle.loads((folder / "function" / "payload.pkl").read_bytes())
args, kwargs = cloudpickle.loads((folder / "arguments" / "payload.pkl").read_bytes())
print(repr(args), repr(kwargs), func(41) if not args or not hasattr(args[0], "uri") else "")
"""


def test_the_job_reads_the_function_without_the_project_and_variables_as_sdk_placeholders(
    tmp_path: Path,
) -> None:
    definition, out = compile_module(tmp_path, "job")
    sdk = tmp_path / "sdk" / "sagemaker" / "remote_function" / "core"
    sdk.mkdir(parents=True)
    for package in (sdk.parent.parent, sdk.parent, sdk):
        (package / "__init__.py").write_text("")
    (sdk / "pipeline_variables.py").write_text(FAKE_SDK)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    base = out / "b" / "other" / "functions" / "Edits"
    lines = []
    for name in ("first", "second"):
        folder = base / name / step_dir(by_name(definition)[name])
        env = {**os.environ, "PYTHONPATH": str(tmp_path / "sdk")}  # no sagepipe, no edits.py
        proc = subprocess.run(
            [
                sys.executable,
                "-I",
                "-c",
                f"import sys; sys.path.insert(0, {str(tmp_path / 'sdk')!r})\n" + READ,
                str(folder),
            ],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        lines.append(proc.stdout.strip())
    assert lines[0] == "(_ParameterInteger(name='N'),) {} 42"
    assert lines[1] == (
        "(_DelayedReturn(uri=_Properties(path='Steps.first.OutputDataConfig.S3OutputPath'), "
        "reference_path=()),) {}"
    )


def fn_pipeline(*args: Any, **kwargs: Any) -> Pipeline:
    @step(name="f", instance_type="ml.m5.large", image_uri=IMAGE, **kwargs)
    def f(*values: Any) -> int:
        return len(values)

    return Pipeline("Errors", steps=[f(*args)], parameters=[ParameterInteger("N")])


def compile_(pipeline: Pipeline, base_dir: Path | None = None) -> CompiledPipeline:
    return compile_pipeline(pipeline, bucket="b", base_dir=base_dir)


def test_an_unpicklable_argument_is_one_line_naming_it() -> None:
    with pytest.raises(
        PipelineError, match=r"^function step 'f': argument 2 \(lock\) cannot be pickled: .*lock"
    ) as exc:
        compile_(fn_pipeline(1, threading.Lock()))
    assert "\n" not in str(exc.value)


def test_a_function_using_an_unpicklable_global_is_one_line() -> None:
    @step(name="g", instance_type="ml.m5.large", image_uri=IMAGE)
    def g() -> bool:
        return LOCK.locked()

    with pytest.raises(
        PipelineError,
        match=r"^function step 'g': function .*g .*cannot be pickled: .*create it inside the function$",
    ):
        compile_(Pipeline("Errors", steps=[g()]))


def test_a_function_defined_in_main_is_pickled_by_value(tmp_path: Path) -> None:
    script = tmp_path / "interactive.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import cloudpickle
            from sagepipe import Pipeline, step
            from sagepipe.definition import compile_pipeline
            from sagepipe.definition.payloads import read_payload

            @step(name="m", instance_type="ml.m5.large", image_uri={IMAGE!r})
            def m(x: int) -> int:
                return x * 3

            compiled = compile_pipeline(Pipeline("Main", steps=[m(2)]), bucket="b")
            files = {{u.uri.rsplit("/", 2)[-2] + "/" + u.uri.rsplit("/", 1)[-1]: u.read() for u in compiled.uploads}}
            func = read_payload(files["function/payload.pkl"], files["function/metadata.json"])
            args, kwargs = read_payload(files["arguments/payload.pkl"], files["arguments/metadata.json"])
            assert b"__main__" in files["function/payload.pkl"]
            print(func(*args, **kwargs))
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "6"


def test_a_missing_dependencies_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(
        PipelineError,
        match=r"^function step 'f': dependencies file 'req.txt' not found \(looked at .*req.txt\); give the path of a requirements.txt$",
    ):
        compile_(fn_pipeline(dependencies="req.txt"), tmp_path)
    (tmp_path / "env.yml").write_text("name: x\n")
    with pytest.raises(PipelineError, match="is a conda environment"):
        compile_(fn_pipeline(dependencies="env.yml"), tmp_path)


def test_the_dependencies_file_ships_with_the_sdk_requirement(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("pandas==2.2.2")
    compiled = compile_(fn_pipeline(dependencies="requirements.txt"), tmp_path)
    reqs = [u for u in compiled.uploads if u.uri.endswith("/requirements.txt")]
    assert [u.read() for u in reqs] == [b"pandas==2.2.2\nsagemaker>=2.256.0,<3.0.0\n"]
    (tmp_path / "requirements.txt").write_text("sagemaker==2.257.0\n")
    compiled = compile_(fn_pipeline(dependencies="requirements.txt"), tmp_path)
    assert [u.read() for u in compiled.uploads if u.uri.endswith("/requirements.txt")] == [
        b"sagemaker==2.257.0\n"
    ]


def test_the_client_python_version_is_recorded_and_checked_against_base_python_images() -> None:
    compiled = compile_(fn_pipeline())
    step_json = json.loads(compiled.definition.dumps())["Steps"][0]
    args = step_json["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
    client = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert args[args.index("--client_python_version") + 1] == client
    other = "38" if client != "3.8" else "310"
    image = f"236514542706.dkr.ecr.us-east-1.amazonaws.com/sagemaker-base-python-{other}:1.0"

    @step(name="h", instance_type="ml.m5.large", image_uri=image)
    def h() -> None:
        return None

    with pytest.raises(
        PipelineError,
        match=rf"^function step 'h': image .* runs Python {other[0]}\.{other[1:]} but the function is pickled with Python {client}; ",
    ):
        compile_(Pipeline("Errors", steps=[h()]))

    @step(name="k", instance_type="ml.m5.large")
    def k() -> None:
        return None

    with pytest.raises(
        PipelineError, match=rf"^function step 'k': give image_uri, an image with Python {client}"
    ):
        compile_(Pipeline("Errors", steps=[k()]))


def test_pre_execution_commands_and_script_ship_as_pre_exec_sh(tmp_path: Path) -> None:
    compiled = compile_(fn_pipeline(pre_execution_commands=["echo a", "echo b"]))
    assert [u.read() for u in compiled.uploads if u.uri.endswith("/pre_exec.sh")] == [
        b"echo a\necho b\n"
    ]
    (tmp_path / "setup.sh").write_text("apt-get update\n")
    compiled = compile_(fn_pipeline(pre_execution_script="setup.sh"), tmp_path)
    assert [u.read() for u in compiled.uploads if u.uri.endswith("/pre_exec.sh")] == [
        b"apt-get update\n"
    ]
    with pytest.raises(PipelineError, match=r"pre_execution_script 'nope\.sh' not found"):
        compile_(fn_pipeline(pre_execution_script="nope.sh"), tmp_path)


def test_read_payload_checks_the_metadata() -> None:
    compiled = compile_(fn_pipeline(ParameterInteger("N")))
    files = {
        u.uri.rsplit("/", 2)[-2] + "/" + u.uri.rsplit("/", 1)[-1]: u.read()
        for u in compiled.uploads
    }
    payload, meta = files["function/payload.pkl"], files["function/metadata.json"]
    assert read_payload(payload, meta)(1, 2) == 2
    with pytest.raises(PipelineError, match="does not match the SHA-256"):
        read_payload(payload + b"x", meta)
    with pytest.raises(PipelineError, match="expected cloudpickle 2023-04-24"):
        read_payload(payload, meta.replace(b"2023-04-24", b"2020-01-01"))
    with pytest.raises(PipelineError, match="not JSON"):
        read_payload(payload, b"{")


NOTEBOOK = """
import hashlib, sys
from sagepipe import Pipeline, step
from sagepipe.definition import compile_pipeline

cell = '''
@step(name="cell", instance_type="ml.m5.large", image_uri="IMAGE")
def cell(x: int) -> int:
    return x + 1
'''
exec(compile(cell, sys.argv[1], "exec"), globals())
compiled = compile_pipeline(Pipeline("Notebook", steps=[cell(1)]), bucket="b")
print(compiled.definition.dumps().count("<interactive>"), [u.uri for u in compiled.uploads][0])
"""


def test_a_notebook_cell_gives_the_same_payload_in_a_new_kernel(tmp_path: Path) -> None:
    # A kernel compiles each cell under a file name of its own process, not on disk.
    out = []
    for pid in ("101", "202"):
        proc = subprocess.run(
            [sys.executable, "-c", NOTEBOOK.replace("IMAGE", IMAGE), f"/tmp/ipykernel_{pid}/c.py"],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        out.append(proc.stdout)
    assert out[0] == out[1]
    assert out[0].startswith("0 s3://b/other/functions/Notebook/cell/")


MAIN_WITH_LOCK = """
import threading
from sagepipe import Pipeline, step
from sagepipe.definition import compile_pipeline
from sagepipe.errors import PipelineError

lock = threading.Lock()

@step(name="guarded", instance_type="ml.m5.large", image_uri="IMAGE")
def guarded() -> bool:
    return lock.locked()

try:
    compile_pipeline(Pipeline("Main", steps=[guarded()]), bucket="b")
except PipelineError as exc:
    print(exc)
"""


def test_a_main_function_using_an_unpicklable_global_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", MAIN_WITH_LOCK.replace("IMAGE", IMAGE)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1
    assert proc.stdout.startswith(
        "function step 'guarded': function guarded (module __main__) cannot be pickled: "
    )
    assert "lock" in proc.stdout and proc.stdout.strip().endswith("create it inside the function")
