"""Authoring function steps: @step, DelayedReturn, and what the pipeline model makes of them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sagepipe import (
    CacheConfig,
    ConditionEquals,
    ConditionGreaterThan,
    ConditionStep,
    DelayedReturn,
    ExecutionVariables,
    FailStep,
    Join,
    JsonGet,
    ParameterBoolean,
    ParameterString,
    Pipeline,
    ProcessingOutput,
    ProcessingStep,
    Processor,
    TrainingInput,
    TrainingStep,
    step,
)
from sagepipe.core.functions import FunctionStep
from sagepipe.definition import compile_pipeline
from sagepipe.errors import PipelineError

IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/fn-runtime:3.11"
RUN = {"instance_type": "ml.m5.large", "image_uri": IMAGE}


@step(name="make", **RUN)
def make(n: int) -> tuple[int, str]:
    """Make a pair."""
    return n, "x"


@step(**RUN)
def mapping(flag: bool) -> dict[str, Any]:
    return {"flag": flag, "uri": "s3://b/k"}


@step(name="use", **RUN)
def use(value: Any, label: str = "") -> int:
    return 1


def definition(pipeline: Pipeline) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(compile_pipeline(pipeline, bucket="b").definition.dumps())
    return data


def results(step_name: str, path: str) -> dict[str, Any]:
    uri = {
        "Std:Join": {
            "On": "/",
            "Values": [{"Get": f"Steps.{step_name}.OutputDataConfig.S3OutputPath"}, "results.json"],
        }
    }
    return {"Std:JsonGet": {"S3Uri": uri, "Path": path}}


def test_calling_a_step_function_returns_a_delayed_return_of_a_function_step() -> None:
    value = make(3)
    assert isinstance(value, DelayedReturn)
    assert isinstance(value.step, FunctionStep)
    assert value.step.name == "make"
    assert value.step.display_name == f"{__name__}.make"
    assert value.step.description == "Make a pair."
    assert mapping(True).step.name == "mapping"
    assert mapping(True).step.description == __file__
    assert make.__name__ == "make" and make.__doc__ == "Make a pair."


def test_indexing_builds_the_sdk_json_path() -> None:
    assert make(1).expr == results("make", "Result")
    assert make(1)[1].expr == results("make", "Result[1]")
    assert mapping(True)["flag"].expr == results("mapping", "Result['flag']")
    assert mapping(True)["a"][0]["b"].expr == results("mapping", "Result['a'][0]['b']")


def test_a_sequence_return_takes_int_indexes_only() -> None:
    with pytest.raises(PipelineError, match="is a sequence: index it with an int, not 'a'"):
        make(1)["a"]
    with pytest.raises(PipelineError, match="cannot be unpacked or iterated"):
        _a, _b = make(1)
    with pytest.raises(PipelineError, match=r"indexed with 1\.5: use an int or a str"):
        mapping(True)[1.5]  # type: ignore[index]
    for key in ("it's", "a]b", "", "back\\slash"):
        with pytest.raises(PipelineError, match="cannot hold an empty key, quotes, brackets"):
            mapping(True)[key]


def test_returns_in_conditions_and_classic_steps_add_depends_on_as_the_sdk_does() -> None:
    pair = make(2)
    flags = mapping(True)
    train = TrainingStep(
        "train",
        estimator=__import__("sagepipe").Estimator(image_uri=IMAGE),
        inputs={"train": TrainingInput(s3_data=flags["uri"])},
    )
    gate = ConditionStep(
        "gate",
        conditions=[
            ConditionGreaterThan(left=pair[0], right=1),
            ConditionEquals(left=flags["flag"], right=True),
        ],
        if_steps=[train],
        else_steps=[FailStep("stop", error_message=Join(on=" ", values=["got", pair[1]]))],
    )
    steps = {s["Name"]: s for s in definition(Pipeline("p", steps=[gate]))["Steps"]}
    # The function steps nobody listed join the pipeline, as the SDK's compiler adds them.
    assert set(steps) == {"gate", "make", "mapping"}
    assert steps["gate"]["DependsOn"] == ["make", "mapping"]
    branch = steps["gate"]["Arguments"]["IfSteps"][0]
    assert branch["DependsOn"] == ["mapping"]
    assert branch["Arguments"]["InputDataConfig"][0]["DataSource"]["S3DataSource"][
        "S3Uri"
    ] == results("mapping", "Result['uri']")
    fail = steps["gate"]["Arguments"]["ElseSteps"][0]
    assert fail["DependsOn"] == ["make"]
    for name in ("make", "mapping"):
        assert steps[name]["Arguments"]["AlgorithmSpecification"]["ContainerArguments"][-2:] == [
            "--serialize_output_to_json",
            "true",
        ]


def test_arguments_become_property_references_and_only_read_steps_write_json() -> None:
    label = ParameterString("Label", default_value="a")
    strict = ParameterBoolean("Strict", default_value=False)
    prep = ProcessingStep(
        "prep",
        processor=Processor(image_uri=IMAGE),
        outputs=[ProcessingOutput(source="/opt/ml/processing/out", output_name="out")],
    )
    out = prep.properties.ProcessingOutputConfig.Outputs["out"].S3Output.S3Uri
    final = use(make(1)[0], label=label)
    steps = {
        s["Name"]: s
        for s in definition(
            Pipeline(
                "p",
                steps=[prep, final, use_too(out, strict, ExecutionVariables.PIPELINE_NAME)],
                parameters=[label, strict],
            )
        )["Steps"]
    }
    args = steps["use"]["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
    refs = args[args.index("--property_references") + 1 :]
    assert refs == [
        "Execution.PipelineExecutionId",
        {"Get": "Execution.PipelineExecutionId"},
        "Steps.make.OutputDataConfig.S3OutputPath",
        {"Std:Join": {"On": "", "Values": [{"Get": "Steps.make.OutputDataConfig.S3OutputPath"}]}},
        "Parameters.Label",
        {"Get": "Parameters.Label"},
    ]
    assert steps["use"]["DependsOn"] == ["make"]
    other = steps["use_too"]["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
    assert other[other.index("--property_references") + 3 :] == [
        "Steps.prep.ProcessingOutputConfig.Outputs['out'].S3Output.S3Uri",
        {
            "Std:Join": {
                "On": "",
                "Values": [
                    {"Get": "Steps.prep.ProcessingOutputConfig.Outputs['out'].S3Output.S3Uri"}
                ],
            }
        },
        "Parameters.Strict",
        {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.Strict"}]}},
        "Execution.PipelineName",
        {"Get": "Execution.PipelineName"},
    ]
    assert "DependsOn" not in steps["use_too"]  # a classic step's property is a data reference
    assert "--serialize_output_to_json" not in args


@step(name="use_too", **RUN)
def use_too(*values: Any) -> int:
    return len(values)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"job_conda_env": "x"},
            r"^@step\(job_conda_env=...\): conda environments are not supported",
        ),
        (
            {"spark_config": object()},
            r"^@step\(spark_config=...\): Spark function steps are not supported$",
        ),
        ({"colour": "red"}, r"^@step\(colour=...\): it is not a parameter of @step$"),
        ({"dependencies": "auto_capture"}, "auto_capture'\\): not supported for pipeline steps"),
        (
            {"instance_type": None},
            '^@step: instance_type is required, e.g. instance_type="ml.m5.large"$',
        ),
        ({"instance_count": 2}, r"^@step: instance_count=2; function steps run on 1$"),
        ({"pre_execution_commands": ["a"], "pre_execution_script": "b.sh"}, "not both"),
        ({"max_wait_time_in_seconds": 10}, "needs use_spot_instances=True"),
    ],
)
def test_unsupported_or_invalid_parameters_are_one_line(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(PipelineError, match=message):
        step(**{**RUN, **kwargs})


def test_bad_calls_are_one_line_at_authoring_time() -> None:
    with pytest.raises(
        PipelineError, match=r"^function step 'make': make\(\) missing a required argument: 'n'$"
    ):
        make()
    label = ParameterString("Label")
    with pytest.raises(
        PipelineError,
        match=r"^function step 'use': argument 1 is a Join, which a function cannot receive",
    ):
        use(Join(on="", values=["a", label]))
    with pytest.raises(PipelineError, match=r"^function step 'use': argument 'label' is a JsonGet"):
        use(1, label=JsonGet("s", "f", "a"))
    with pytest.raises(
        PipelineError,
        match=r"^function step 'use': argument 1 holds a pipeline variable inside a list; pass each",
    ):
        use([label])
    with pytest.raises(PipelineError, match=r"holds a pipeline variable inside a dict"):
        use({"k": make(1)})


def test_function_steps_refuse_properties_and_vpc_halves() -> None:
    with pytest.raises(
        PipelineError, match="has no properties to read; use the value its function returns"
    ):
        make(1).step.properties  # noqa: B018

    @step(name="vpc", subnets=["s"], **RUN)
    def vpc() -> None:
        return None

    with pytest.raises(PipelineError, match="give both subnets and security_group_ids"):
        compile_pipeline(Pipeline("p", steps=[vpc()]), bucket="b")


def test_two_calls_need_two_names_and_unlisted_parameters_are_refused() -> None:
    with pytest.raises(PipelineError, match="step name 'make' is used twice"):
        Pipeline("p", steps=[make(1), make(2)])
    with pytest.raises(PipelineError, match="reads parameter 'Label' which is not declared"):
        Pipeline("p", steps=[use(1, label=ParameterString("Label"))])


def test_depends_on_accepts_a_delayed_return() -> None:
    pair = make(1)
    fail = FailStep("stop", error_message="x", depends_on=(pair,))
    assert fail.depends_on_names == ("make",)
    steps = {s["Name"]: s for s in definition(Pipeline("p", steps=[fail]))["Steps"]}
    assert steps["stop"]["DependsOn"] == ["make"]
    # An explicit dependency is no data dependency: make writes no results.json.
    assert (
        "--serialize_output_to_json"
        not in steps["make"]["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
    )


def test_cache_config_makes_the_training_step_cacheable() -> None:
    @step(name="cached", cache_config=CacheConfig(enable_caching=True, expire_after="P30D"), **RUN)
    def cached() -> int:
        return 1

    steps = {s["Name"]: s for s in definition(Pipeline("p", steps=[cached()]))["Steps"]}
    assert steps["cached"]["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}
    assert (
        "CacheConfig"
        not in {s["Name"]: s for s in definition(Pipeline("p", steps=[make(1)]))["Steps"]}["make"]
    )
