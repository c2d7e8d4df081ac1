"""What a Transform request may ask for locally, and which handlers serve a model's image."""

from __future__ import annotations

from sagepipe.engine.transform import framework, transform_problems

XGB = "246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-xgboost:1.7-1"
SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def request(**changes: object) -> dict[str, object]:
    inp: dict[str, object] = {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in/"}},
        "ContentType": "text/csv",
        "SplitType": "Line",
    }
    inp.update(changes)
    return {
        "ModelName": "m",
        "TransformInput": inp,
        "TransformOutput": {"S3OutputPath": "s3://b/out"},
    }


def test_the_sdk_s_usual_request_runs() -> None:
    args = request()
    args["DataProcessing"] = {
        "InputFilter": "$[1:]",
        "JoinSource": "Input",
        "OutputFilter": "$[0,-1]",
    }
    assert transform_problems(args) == []


def test_settings_the_agent_lacks_are_named() -> None:
    assert transform_problems(request(SplitType="TFRecord")) == [
        "TransformInput.SplitType 'TFRecord': locally None, Line, RecordIO"
    ]
    assert transform_problems(request(CompressionType="Zip")) == [
        "TransformInput.CompressionType 'Zip': locally None, Gzip"
    ]
    args = request(SplitType="None")
    args["DataProcessing"] = {"JoinSource": "Input"}
    assert transform_problems(args) == [
        "DataProcessing filters and JoinSource Input need SplitType Line"
    ]
    args = request()
    args["MaxPayloadInMB"] = 101
    assert transform_problems(args) == ["MaxPayloadInMB 101 is not between 0 and 100"]


def test_expressions_are_left_for_run_time() -> None:
    assert transform_problems(request(SplitType={"Get": "Parameters.Split"})) == []


def test_the_image_picks_the_framework_s_default_handlers() -> None:
    assert framework(XGB) == "xgboost"
    assert framework(SKLEARN) == "sklearn"
    assert framework("123.dkr.ecr.us-east-1.amazonaws.com/my-scorer:2") == "my-scorer"
