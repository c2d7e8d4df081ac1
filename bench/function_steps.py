"""Function-step (``@step``) overhead: a chain of 10 trivial functions, each taking the previous
one's return value.

Three ways, measured in the same run, round-robin, median of RUNS:

- the chain as function steps (Training steps in the SDK's format: payloads pickled with
  cloudpickle, checked, the return value staged into the next step and written back);
- the same chain as plain processing steps (``python3 -c pass`` on the same environment);
- the functions called in one process.

overhead per function step = (function chain - in-process calls) / 10. Target: <= 150 ms per
function step (bwrap sandbox, 2-core machine). The definition is written here in the SDK's
format (the SDK is no dependency); the step image maps to a Python 3.11 environment with
cloudpickle.

    python bench/function_steps.py [--runs 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import cloudpickle

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import record, table, timed
from sagepipe import Pipeline, ProcessingStep, Processor
from sagepipe.config import Settings
from sagepipe.definition import compile_pipeline, load
from sagepipe.definition.function_payloads import ENTRYPOINT_SCRIPT, metadata_json
from sagepipe.engine.factory import build_engine, start_definition
from sagepipe.engine.sandbox import BwrapSandbox, ProcessSandbox

STEPS = 10
IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/fn-runtime:py311"
PYPROJECT = (
    '[tool.sagepipe]\nbucket = "bench"\n[tool.sagepipe.images]\n'
    '"fn-runtime" = { python = "3.11", packages = ["cloudpickle>=3", "tblib>=1.7.0,<4"] }\n'
)
BASE = "s3://bench/FnBench"
BUILD = "2026-01-01-00-00-00-000"
MODULE = "sagemaker.remote_function.core.pipeline_variables"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def add_one(value: int) -> int:
    """The trivial function of every step."""
    return value + 1


def _placeholders() -> tuple[type, type]:
    """Classes pickled under the SDK's module name, as the SDK pickles its placeholders."""
    module = types.ModuleType(MODULE)
    for name in ("sagemaker", "sagemaker.remote_function", "sagemaker.remote_function.core"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules[MODULE] = module
    made = []
    for name, fields in (("_Properties", ("path",)), ("_DelayedReturn", ("uri", "reference_path"))):
        cls = dataclasses.make_dataclass(name, fields)
        cls.__module__ = MODULE
        setattr(module, name, cls)
        made.append(cls)
    return made[0], made[1]


def _function_step(name: str, previous: str | None) -> dict[str, Any]:
    execution = {"Get": "Execution.PipelineExecutionId"}
    references: list[Any] = ["Execution.PipelineExecutionId", execution]
    if previous:
        path = f"Steps.{previous}.OutputDataConfig.S3OutputPath"
        references += [path, {"Get": path}]
    argv = ["--s3_base_uri", BASE, "--region", "us-east-1", "--client_python_version", PYTHON,
            "--dependency_settings", '{"dependency_file": null}', "--pipeline_step_name", name,
            "--pipeline_execution_id", execution, "--func_step_s3_dir", BUILD,
            "--property_references", *references]  # fmt: skip
    return {
        "Name": name,
        "Type": "Training",
        "Arguments": {
            "RoleArn": "arn:aws:iam::111122223333:role/Bench",
            "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
            "OutputDataConfig": {
                "S3OutputPath": {
                    "Std:Join": {"On": "/", "Values": [BASE, execution, name, "results"]}
                }
            },
            "AlgorithmSpecification": {
                "TrainingImage": IMAGE,
                "TrainingInputMode": "File",
                "ContainerEntrypoint": ["/bin/bash", ENTRYPOINT_SCRIPT],
                "ContainerArguments": argv,
            },
            "ResourceConfig": {
                "VolumeSizeInGB": 30,
                "InstanceCount": 1,
                "InstanceType": "ml.m5.large",
            },
            "Environment": {},
        },
    }


def function_chain(store_root: Path) -> dict[str, Any]:
    """The definition, with the function and argument payloads written into the local store."""
    properties, delayed = _placeholders()
    steps = []
    for i in range(STEPS):
        name, previous = f"f{i:02d}", (f"f{i - 1:02d}" if i else None)
        steps.append(_function_step(name, previous))
        args = (
            (delayed(properties(f"Steps.{previous}.OutputDataConfig.S3OutputPath"), ()),)
            if previous
            else (0,)
        )
        folder = store_root / "bench" / "FnBench" / name / BUILD
        for sub, obj in (("function", add_one), ("arguments", (args, {}))):
            payload = cloudpickle.dumps(obj)
            (folder / sub).mkdir(parents=True, exist_ok=True)
            (folder / sub / "payload.pkl").write_bytes(payload)
            (folder / sub / "metadata.json").write_bytes(metadata_json(payload, "3.11.7"))
    return {"Version": "2020-12-01", "Metadata": {}, "Parameters": [], "Steps": steps}


def processing_chain() -> Pipeline:
    proc = Processor(image_uri=IMAGE, command=("python3", "-c", "pass"))
    steps: list[ProcessingStep] = []
    for i in range(STEPS):
        steps.append(ProcessingStep(f"p{i:02d}", processor=proc, depends_on=steps[-1:]))
    return Pipeline("pchain", steps=steps)


def in_process() -> None:
    value = 0
    for _ in range(STEPS):
        value = add_one(value)
    assert value == STEPS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pyproject.toml").write_text(PYPROJECT)
        env = {"SAGEPIPE_CACHE_DIR": os.environ.get("SAGEPIPE_CACHE_DIR", "")}
        settings = Settings.from_env(cwd=root, environ={k: v for k, v in env.items() if v})
        bwrap = shutil.which("bwrap")
        sandbox = BwrapSandbox(bwrap) if bwrap else ProcessSandbox()
        engine = build_engine(settings, sandbox)
        functions = load(function_chain(settings.local_store_root))
        processing = compile_pipeline(processing_chain(), bucket="bench").definition

        def run(definition: Any, name: str) -> None:
            execution = start_definition(engine, definition, name, {})
            assert execution.wait() == "Succeeded", execution.describe()

        runners = {
            "function steps": lambda: run(functions, "FnBench"),
            "processing steps (python3 -c pass)": lambda: run(processing, "pchain"),
            "functions in one process": in_process,
        }
        for once in runners.values():
            once()  # warm-up: environment, imports
        samples: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.runs):
            for name, once in runners.items():
                samples[name].append(timed(once))
    walls = {name: statistics.median(s) for name, s in samples.items()}
    base = walls["functions in one process"]
    ref = walls["function steps"]
    rows = [
        [name, f"{wall:.3f}", f"{(wall - base) / STEPS * 1000:.1f}", f"{wall / ref:.2f}x"]
        for name, wall in walls.items()
    ]
    extra = (walls["function steps"] - walls["processing steps (python3 -c pass)"]) / STEPS
    load_average = os.getloadavg()[0]
    body = (
        f"A chain of {STEPS} functions (`value + 1`, each taking the previous return value); "
        f"median of {args.runs} runs after one warm-up, taking turns run by run; sandbox "
        f"{sandbox.name}; steps on a Python {PYTHON} environment with cloudpickle. per step = "
        f"(wall - in-process wall) / {STEPS}. Ratio: wall relative to the function steps, "
        f"same run. Load average at the end: {load_average:.1f} (other work on the machine slows both "
        "sandboxed chains alike; the absolute times move with it, the ratio less).\n\n"
        + table(
            ["chain", "wall (s)", "per step over in-process (ms)", "wall vs function steps"], rows
        )
        + f"\n\nA function step costs {extra * 1000:.0f} ms more than a processing step running "
        "`python3 -c pass`: reading and checking the payloads from the store, staging the "
        "previous return value, importing cloudpickle and unpickling in the step, writing and "
        "publishing payload.pkl/metadata.json, and packing the (empty) model as SageMaker does. "
        "Target: <= 150 ms per function step."
    )
    print(body)
    record("function steps: a chain of 10 @step functions", body)


if __name__ == "__main__":
    main()
