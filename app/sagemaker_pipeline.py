"""The example ML pipeline: read_data -> clean_data -> prepare_data -> normalize_data -> train
-> evaluate -> quality gate -> publish and register the model, or fail with the metric.

Every step is a SageMaker processing job on the scikit-learn 1.2-1 image; the same definition
runs locally (`sagepipe run`) and on SageMaker (`sagepipe deploy` / `sagepipe run --backend
sagemaker`). Data moves between steps as CSV (the 1.2-1 image ships no pyarrow).
"""

from __future__ import annotations

from pathlib import Path

from sagepipe import (
    CacheConfig,
    ConditionGreaterThanOrEqualTo,
    ConditionStep,
    ExecutionVariables,
    FailStep,
    Join,
    JsonGet,
    ParameterFloat,
    ParameterInteger,
    ParameterString,
    Pipeline,
    ProcessingInput,
    ProcessingOutput,
    ProcessingStep,
    Processor,
    Properties,
    PropertyFile,
    RegisterModel,
)

NAME = "penguins-training"
SRC = Path(__file__).resolve().parent / "src"
IN = "/opt/ml/processing/input"
OUT = "/opt/ml/processing/output"
PENGUIN_COLUMNS = (
    "species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year"
)


def get_pipeline(
    bucket: str = "sagepipe-local", region: str = "us-east-1", role: str | None = None
) -> Pipeline:
    """The pipeline, with data and models in ``bucket``."""
    input_uri = ParameterString(
        "InputDataUri", default_value=f"s3://{bucket}/other/data/raw/penguins.csv"
    )
    target = ParameterString("TargetColumn", default_value="species")
    expected = ParameterString("ExpectedColumns", default_value=PENGUIN_COLUMNS)
    problem = ParameterString(
        "ProblemType", default_value="classification", enum_values=["classification", "regression"]
    )
    test_fraction = ParameterFloat("TestFraction", default_value=0.2)
    val_fraction = ParameterFloat("ValidationFraction", default_value=0.2)
    seed = ParameterInteger("RandomSeed", default_value=42)
    model_type = ParameterString(
        "ModelType",
        default_value="random_forest",
        enum_values=["random_forest", "gradient_boosting", "linear"],
    )
    n_estimators = ParameterInteger("NEstimators", default_value=200)
    max_depth = ParameterInteger("MaxDepth", default_value=0)
    learning_rate = ParameterFloat("LearningRate", default_value=0.1)
    model_output = ParameterString(
        "ModelOutputUri", default_value=f"s3://{bucket}/other/models/{NAME}"
    )
    threshold = ParameterFloat("QualityThreshold", default_value=0.9)
    instance_type = ParameterString("ProcessingInstanceType", default_value="ml.m5.large")

    processor = Processor(
        framework="sklearn",
        framework_version="1.2-1",
        role=role,
        region=region,
        instance_type=instance_type,
    )
    cache = CacheConfig(enable_caching=True, expire_after="P30D")

    def step(name: str, script: str, inputs, outputs, args, **kw) -> ProcessingStep:  # type: ignore[no-untyped-def]
        return ProcessingStep(
            name,
            processor=processor,
            code=str(SRC / script),
            inputs=inputs,
            outputs=outputs,
            job_arguments=args,
            cache_config=cache,
            **kw,
        )

    def output(step_: ProcessingStep, name: str) -> Properties:
        return step_.properties.ProcessingOutputConfig.Outputs[name].S3Output.S3Uri

    read = step(
        "read_data",
        "read_data.py",
        [ProcessingInput(input_uri, f"{IN}/data", input_name="data")],
        [ProcessingOutput(f"{OUT}/raw", output_name="raw")],
        [
            "--input-dir",
            f"{IN}/data",
            "--output-dir",
            f"{OUT}/raw",
            "--target",
            target,
            "--expected-columns",
            expected,
        ],
    )
    clean = step(
        "clean_data",
        "clean_data.py",
        [ProcessingInput(output(read, "raw"), f"{IN}/raw", input_name="raw")],
        [
            ProcessingOutput(f"{OUT}/clean", output_name="clean"),
            ProcessingOutput(f"{OUT}/artifacts", output_name="artifacts"),
        ],
        [
            "--input-dir",
            f"{IN}/raw",
            "--output-dir",
            f"{OUT}/clean",
            "--artifacts-dir",
            f"{OUT}/artifacts",
            "--target",
            target,
            "--problem-type",
            problem,
        ],
    )
    prepare = step(
        "prepare_data",
        "prepare_data.py",
        [
            ProcessingInput(output(clean, "clean"), f"{IN}/clean", input_name="clean"),
            ProcessingInput(output(clean, "artifacts"), f"{IN}/cleaning", input_name="cleaning"),
        ],
        [
            ProcessingOutput(f"{OUT}/splits", output_name="splits"),
            ProcessingOutput(f"{OUT}/artifacts", output_name="artifacts"),
        ],
        [
            "--input-dir",
            f"{IN}/clean",
            "--cleaning-dir",
            f"{IN}/cleaning",
            "--output-dir",
            f"{OUT}/splits",
            "--artifacts-dir",
            f"{OUT}/artifacts",
            "--target",
            target,
            "--problem-type",
            problem,
            "--test-fraction",
            test_fraction,
            "--validation-fraction",
            val_fraction,
            "--seed",
            seed,
        ],
    )
    normalize = step(
        "normalize_data",
        "normalize_data.py",
        [ProcessingInput(output(prepare, "splits"), f"{IN}/splits", input_name="splits")],
        [
            ProcessingOutput(f"{OUT}/normalized", output_name="normalized"),
            ProcessingOutput(f"{OUT}/artifacts", output_name="artifacts"),
        ],
        [
            "--input-dir",
            f"{IN}/splits",
            "--output-dir",
            f"{OUT}/normalized",
            "--artifacts-dir",
            f"{OUT}/artifacts",
            "--target",
            target,
        ],
    )
    splits = output(normalize, "normalized")
    train = step(
        "train",
        "train.py",
        [
            ProcessingInput(Join("/", (splits, "train")), f"{IN}/train", input_name="train"),
            ProcessingInput(
                Join("/", (splits, "validation")), f"{IN}/validation", input_name="validation"
            ),
            ProcessingInput(output(clean, "artifacts"), f"{IN}/cleaning", input_name="cleaning"),
            ProcessingInput(output(prepare, "artifacts"), f"{IN}/encoding", input_name="encoding"),
            ProcessingInput(
                output(normalize, "artifacts"), f"{IN}/normalization", input_name="normalization"
            ),
        ],
        [ProcessingOutput(f"{OUT}/model", output_name="model")],
        [
            "--train-dir",
            f"{IN}/train",
            "--validation-dir",
            f"{IN}/validation",
            "--artifacts-dirs",
            f"{IN}/cleaning,{IN}/encoding,{IN}/normalization",
            "--model-dir",
            f"{OUT}/model",
            "--target",
            target,
            "--problem-type",
            problem,
            "--model-type",
            model_type,
            "--n-estimators",
            n_estimators,
            "--max-depth",
            max_depth,
            "--learning-rate",
            learning_rate,
            "--seed",
            seed,
        ],
    )
    report = PropertyFile("EvaluationReport", output_name="evaluation", path="evaluation.json")
    evaluate = step(
        "evaluate",
        "evaluate.py",
        [
            ProcessingInput(output(train, "model"), f"{IN}/model", input_name="model"),
            ProcessingInput(Join("/", (splits, "test")), f"{IN}/test", input_name="test"),
        ],
        [ProcessingOutput(f"{OUT}/evaluation", output_name="evaluation")],
        [
            "--model-dir",
            f"{IN}/model",
            "--test-dir",
            f"{IN}/test",
            "--output-dir",
            f"{OUT}/evaluation",
            "--target",
            target,
            "--problem-type",
            problem,
        ],
        property_files=[report],
    )
    publish = ProcessingStep(
        "publish_model",
        processor=processor,
        code=str(SRC / "publish_model.py"),
        cache_config=cache,
        job_arguments=[
            "--model-dir",
            f"{IN}/model",
            "--evaluation-dir",
            f"{IN}/evaluation",
            "--output-dir",
            f"{OUT}/model",
        ],
        inputs=[
            ProcessingInput(output(train, "model"), f"{IN}/model", input_name="model"),
            ProcessingInput(
                output(evaluate, "evaluation"), f"{IN}/evaluation", input_name="evaluation"
            ),
        ],
        outputs=[
            ProcessingOutput(
                f"{OUT}/model",
                destination=Join("/", (model_output, ExecutionVariables.PIPELINE_EXECUTION_ID)),
                output_name="model",
            )
        ],
    )
    register = RegisterModel(
        "register_model",
        model_package_group_name=NAME,
        model_data=Join("/", (output(publish, "model"), "model.tar.gz")),
        image_uri=processor.image_uri
        or "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
        model_metrics_uri=Join("/", (output(evaluate, "evaluation"), "evaluation.json")),
        approval_status="PendingManualApproval",
    )
    metric = JsonGet(evaluate.name, report, "quality.value")
    gate = ConditionStep(
        "quality_gate",
        conditions=[ConditionGreaterThanOrEqualTo(metric, threshold)],
        if_steps=[publish, register],
        else_steps=[
            FailStep(
                "quality_too_low",
                error_message=Join(
                    " ",
                    (
                        "test",
                        JsonGet(evaluate.name, report, "quality.name"),
                        metric,
                        "is below the threshold",
                        threshold,
                    ),
                ),
            )
        ],
    )
    return Pipeline(
        NAME,
        steps=[read, clean, prepare, normalize, train, evaluate, gate],
        parameters=[
            input_uri,
            target,
            expected,
            problem,
            test_fraction,
            val_fraction,
            seed,
            model_type,
            n_estimators,
            max_depth,
            learning_rate,
            model_output,
            threshold,
            instance_type,
        ],
    )
