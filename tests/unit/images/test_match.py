"""ImageUri matching: any account and region, tag suffixes, user entries first."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sagepipe.errors import ConfigError
from sagepipe.images.match import parse_image_uri, resolve, tag_matches
from tests.conftest import FIXTURES

SKLEARN = "sagemaker-scikit-learn:1.2-1"


@pytest.mark.parametrize(
    "uri",
    [
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
        "746614075791.dkr.ecr.us-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1",
        "450853457545.dkr.ecr.cn-north-1.amazonaws.com.cn/sagemaker-scikit-learn:1.2-1-cpu-py3",
        "sagemaker-scikit-learn:1.2-1-cpu-py3",
        "sagemaker-scikit-learn:1.2-1",
    ],
)
def test_scikit_learn_matches_from_any_region_and_account(uri: str) -> None:
    spec = resolve(uri, {})
    assert (spec.name, spec.kind, spec.python, spec.image) == (SKLEARN, "env", "3.9", uri)
    assert "pandas==1.1.3" in spec.packages
    assert spec.source


def test_xgboost_and_deep_learning_containers() -> None:
    xgb = resolve("246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-xgboost:1.7-1", {})
    assert (xgb.name, xgb.python, xgb.mode) == ("sagemaker-xgboost:1.7-1", "3.9", "algorithm")
    torch = resolve(
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.8.0-cpu-py312", {}
    )
    assert (torch.name, torch.python, torch.large) == ("pytorch-training:2.8.0", "3.12", True)
    tf = resolve("763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-training:2.19-cpu-py310")
    assert (tf.name, tf.python) == ("tensorflow-training:2.19.0", "3.10")
    base = resolve("236514542706.dkr.ecr.us-west-2.amazonaws.com/sagemaker-base-python-310:1.0")
    assert (base.python, base.mode) == ("3.10", "function")
    assert base.packages == ("cloudpickle>=2.2.1", "tblib>=1.7.0,<4")  # what @step payloads need


def test_tags_match_by_version_then_known_suffixes_only() -> None:
    assert tag_matches("1.2-1-cpu-py3", "1.2-1")
    assert tag_matches("2.8.0-gpu-py312-cu129-ubuntu22.04-sagemaker", "2.8.0")
    assert not tag_matches("1.7-1-1", "1.7-1")
    assert not tag_matches("1.2-10", "1.2-1")
    assert parse_image_uri("localhost:5000/team/img:2@sha256:ab").repository == "team/img"
    assert parse_image_uri("img").tag == ""


def test_an_unknown_image_is_one_line_naming_the_image_and_the_setting() -> None:
    uri = "111122223333.dkr.ecr.us-east-1.amazonaws.com/my-trainer:latest"
    with pytest.raises(ConfigError) as caught:
        resolve(uri, {})
    message = str(caught.value)
    assert "\n" not in message
    assert uri in message and "[tool.sagepipe.images]" in message and '"my-trainer"' in message


def test_an_unknown_version_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"sagemaker-xgboost has 0\.90-2, 1\.0-1"):
        resolve("sagemaker-xgboost:1.7-1-1", {})


def test_user_entries_win_and_keep_the_old_string_values(tmp_path: Path) -> None:
    uri = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    assert resolve(uri, {"scikit-learn": "host"}).kind == "host"
    assert resolve(uri, {"scikit-learn": "{python}"}).kind == "host"
    command = resolve(uri, {"scikit": "{python} -X utf8"})
    assert (command.kind, command.command, command.user) == (
        "command",
        ("{python}", "-X", "utf8"),
        True,
    )
    table = resolve(uri, {"scikit": {"command": "/opt/bin/run"}})
    assert table.command == ("/opt/bin/run",)
    (tmp_path / "requirements.txt").write_text("six==1.16.0\n")
    own = resolve(
        "111122223333.dkr.ecr.us-east-1.amazonaws.com/my-trainer:latest",
        {r"my-trainer": {"python": "3.10", "requirements": "requirements.txt"}},
        project_root=tmp_path,
    )
    assert (own.kind, own.python, own.requirements) == (
        "env",
        "3.10",
        tmp_path / "requirements.txt",
    )


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"python": "3"}, "minor version"),
        ({"python": "3.10", "requirements": "missing.txt"}, "does not exist"),
        (42, 'use "host"'),
        ("", "empty command"),
    ],
)
def test_bad_user_entries_say_what_to_write(tmp_path: Path, value: object, error: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)):
        resolve("my-trainer:1", {"my-trainer": value}, project_root=tmp_path)
    with pytest.raises(ConfigError, match="not a regex"):
        resolve("x", {"(": "host"})


def test_every_image_of_the_sdk_fixtures_resolves() -> None:
    text = "".join(p.read_text() for p in sorted((FIXTURES / "sdk").glob("*.json")))
    uris = set(re.findall(r'"(?:ImageUri|TrainingImage)": "([^"]+)"', text))
    assert uris
    user = {"my-trainer": {"python": "3.11"}, "fn-runtime": {"python": "3.11"}}
    for uri in uris:
        assert resolve(uri, user).kind == "env"
    assert json.loads((FIXTURES / "sdk" / "v3_full.json").read_text())
