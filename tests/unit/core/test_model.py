"""The pure pipeline model: expressions, properties, conditions, validation at construction."""

from __future__ import annotations

import dataclasses

import pytest

from sagepipe import (
    CacheConfig,
    ConditionEquals,
    ConditionGreaterThan,
    ConditionIn,
    ConditionNot,
    ConditionOr,
    ConditionStep,
    Estimator,
    ExecutionVariables,
    FailStep,
    Join,
    JsonGet,
    ParameterBoolean,
    ParameterFloat,
    ParameterInteger,
    ParameterString,
    Pipeline,
    ProcessingInput,
    ProcessingOutput,
    ProcessingStep,
    Processor,
    PropertyFile,
    SageMakerJobStepRetryPolicy,
    StepRetryPolicy,
    TrainingStep,
)
from sagepipe.errors import PipelineError

PROC = Processor(image_uri="img:1")


def proc_step(name: str, **kw: object) -> ProcessingStep:
    kw.setdefault("outputs", [ProcessingOutput("/opt/ml/processing/out", output_name="out")])
    return ProcessingStep(name, processor=PROC, **kw)  # type: ignore[arg-type]


def test_parameter_forms_and_type_checks() -> None:
    p = ParameterString("Mode", default_value="a", enum_values=["a", "b"])
    assert p.expr == {"Get": "Parameters.Mode"}
    assert p.to_request() == {
        "Name": "Mode",
        "Type": "String",
        "DefaultValue": "a",
        "EnumValues": ["a", "b"],
    }
    assert ParameterInteger("N", default_value=3).to_request()["Type"] == "Integer"
    assert ParameterFloat("F", default_value=1).to_request()["DefaultValue"] == 1
    with pytest.raises(PipelineError, match="not of type Integer"):
        ParameterInteger("N", default_value="3")
    with pytest.raises(PipelineError, match="not of type Integer"):
        ParameterInteger("N", default_value=True)
    with pytest.raises(PipelineError, match="not of type Boolean"):
        ParameterBoolean("B", default_value="yes")
    with pytest.raises(PipelineError, match="not one of"):
        ParameterString("Mode", default_value="c", enum_values=["a", "b"])


def test_properties_paths_render_and_validate() -> None:
    step = proc_step("prep")
    ref = step.properties.ProcessingOutputConfig.Outputs["out"].S3Output.S3Uri
    assert ref.expr == {"Get": "Steps.prep.ProcessingOutputConfig.Outputs['out'].S3Output.S3Uri"}
    with pytest.raises(PipelineError, match="did you mean ProcessingOutputConfig"):
        _ = step.properties.ProcessingOutputConfg
    train = TrainingStep("t", estimator=Estimator(image_uri="x"))
    assert train.properties.ModelArtifacts.S3ModelArtifacts.expr == {
        "Get": "Steps.t.ModelArtifacts.S3ModelArtifacts"
    }
    assert train.properties.FinalMetricDataList["val:acc"].Value.expr == {
        "Get": "Steps.t.FinalMetricDataList['val:acc'].Value"
    }


def test_expressions_cannot_be_used_as_strings() -> None:
    with pytest.raises(PipelineError, match="use Join"):
        str(ParameterString("X", default_value="a"))


def test_join_and_jsonget_forms() -> None:
    pf = PropertyFile("Report", output_name="out", path="r.json")
    j = Join(on="/", values=["s3:/", "b", ExecutionVariables.PIPELINE_EXECUTION_ID])
    assert j.expr == {
        "Std:Join": {"On": "/", "Values": ["s3:/", "b", {"Get": "Execution.PipelineExecutionId"}]}
    }
    g = JsonGet("eval", pf, "a.b")
    assert g.expr == {
        "Std:JsonGet": {"PropertyFile": {"Get": "Steps.eval.PropertyFiles.Report"}, "Path": "a.b"}
    }


def test_condition_forms() -> None:
    x = ParameterInteger("X", default_value=1)
    assert ConditionGreaterThan(x, 2).to_request() == {
        "Type": "GreaterThan",
        "LeftValue": {"Get": "Parameters.X"},
        "RightValue": 2,
    }
    assert ConditionNot(ConditionIn(x, [1, 2])).to_request() == {
        "Type": "Not",
        "Condition": {"Type": "In", "QueryValue": {"Get": "Parameters.X"}, "Values": [1, 2]},
    }
    assert ConditionOr([ConditionEquals(x, 1)]).to_request()["Type"] == "Or"


def test_retry_policies_validate_exception_types() -> None:
    r = StepRetryPolicy(["SERVICE_FAULT"], max_attempts=2)
    assert r.to_request()["ExceptionType"] == ["Step.SERVICE_FAULT"]
    assert (
        SageMakerJobStepRetryPolicy(["SageMaker.CAPACITY_ERROR"], expire_after_mins=5).to_request()[
            "ExpireAfterMin"
        ]
        == 5
    )
    with pytest.raises(PipelineError, match="invalid"):
        StepRetryPolicy(["SageMaker.CAPACITY_ERROR"], max_attempts=1)
    with pytest.raises(PipelineError, match="exactly one"):
        StepRetryPolicy(["THROTTLING"])


def test_models_are_immutable() -> None:
    step = proc_step("a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.name = "b"  # type: ignore[misc]
    assert isinstance(step.outputs, tuple)
    assert CacheConfig(True, "P1D").to_request() == {"Enabled": True, "ExpireAfter": "P1D"}


def test_lists_are_taken_as_in_the_sdk_and_a_string_for_a_list_is_refused() -> None:
    a = proc_step("a", job_arguments=["--x", "1"], depends_on=[])
    gate = ConditionStep(
        "gate", conditions=[ConditionIn(1, in_values=[1, 2])], if_steps=[a], else_steps=[]
    )
    p = Pipeline("p", steps=[gate], parameters=[ParameterString("s", enum_values=["a", "b"])])
    assert isinstance(a.job_arguments, tuple) and isinstance(gate.if_steps, tuple)
    assert isinstance(p.steps, tuple) and a == proc_step("a", job_arguments=("--x", "1"))
    for build in (
        lambda: proc_step("b", job_arguments="--x 1"),
        lambda: ConditionStep("c", conditions=[ConditionEquals(1, 1)], if_steps="a"),  # type: ignore[arg-type]
        lambda: Join(on=",", values="abc"),
        lambda: ConditionIn(1, in_values="12"),
        lambda: StepRetryPolicy("Step.THROTTLING", max_attempts=2),
        lambda: Pipeline("p", steps=[a], parameters=ParameterString("s")),  # type: ignore[arg-type]
    ):
        with pytest.raises(PipelineError, match=r"takes a list, not (str|ParameterString)"):
            build()


def test_dependencies_inferred_from_properties_and_depends_on() -> None:
    a = proc_step("a")
    b = proc_step(
        "b",
        inputs=[
            ProcessingInput(
                a.properties.ProcessingOutputConfig.Outputs["out"].S3Output.S3Uri,
                "/opt/ml/processing/in",
            )
        ],
    )
    c = proc_step("c", depends_on=[b])
    p = Pipeline("p", steps=[a, b, c])
    assert p.graph.upstream["b"] == {"a"}
    assert p.graph.upstream["c"] == {"b"}
    assert p.graph.order() == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Pipeline("p", steps=[proc_step("a"), proc_step("a")]), "used twice"),
        (lambda: Pipeline("p", steps=[proc_step("bad name")]), "invalid"),
        (lambda: Pipeline("p", steps=[proc_step("a", depends_on=["zz"])]), "DependsOn 'zz'"),
        (
            lambda: Pipeline(
                "p", steps=[proc_step("a", depends_on=["b"]), proc_step("b", depends_on=["a"])]
            ),
            "cycle: ",
        ),
        (
            lambda: Pipeline(
                "p",
                steps=[
                    proc_step("a", job_arguments=[ParameterString("Undeclared", default_value="x")])
                ],
            ),
            "parameter 'Undeclared' which is not declared",
        ),
        (
            lambda: Pipeline(
                "p",
                steps=[
                    proc_step("a"),
                    proc_step(
                        "b",
                        inputs=[
                            ProcessingInput(
                                proc_step("a")
                                .properties.ProcessingOutputConfig.Outputs["otu"]
                                .S3Output.S3Uri,
                                "/opt/ml/processing/in",
                            )
                        ],
                    ),
                ],
            ),
            "no Outputs item 'otu' .did you mean out",
        ),
        (
            lambda: (
                lambda f: Pipeline(
                    "p",
                    steps=[f, ConditionStep("c", conditions=[ConditionEquals(1, 1)], if_steps=[f])],
                )
            )(FailStep("f", error_message="x")),
            "also at the top level",
        ),
        (
            lambda: proc_step("a", property_files=[PropertyFile("R", "nope", "r.json")]),
            "names output 'nope'",
        ),
        (lambda: ProcessingInput("s3://b/k", "/tmp/x"), "must start with /opt/ml/processing/"),
        (lambda: Processor(), "either image_uri or framework"),
    ],
)
def test_bad_pipelines_are_refused_when_built(build: object, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        build()  # type: ignore[operator]
