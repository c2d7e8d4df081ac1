"""StepEnvironments: a step's image -> its environment; user entries first; host and commands."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sagepipe.config import Settings
from sagepipe.definition import load
from sagepipe.engine.environments import StepEnvironments, definition_images, describe, step_image
from sagepipe.errors import ConfigError
from tests.conftest import FIXTURES

SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def test_a_user_entry_equal_to_a_catalogue_pattern_wins(settings: Settings) -> None:
    mapped = settings.with_overrides(images={"sagemaker-scikit-learn": "host"})
    environments = StepEnvironments(mapped)
    assert environments.spec(SKLEARN).kind == "host"
    env = environments.environment(SKLEARN, pytest.fail)  # nothing to build
    assert env.kind == "host" and env.python == Path(sys.executable)
    said: list[str] = []
    environments.prepare([SKLEARN, SKLEARN], said.append)
    environments.prepare([SKLEARN], said.append)
    assert len(said) == 1 and "host interpreter" in said[0]
    assert describe(env).startswith("environment: the host interpreter (Python 3.")


def test_the_older_python_spelling_and_commands(settings: Settings, tmp_path: Path) -> None:
    mapped = settings.with_overrides(images={"my-image": "{python}", "runner": "/opt/x/run --y"})
    environments = StepEnvironments(mapped)
    assert environments.environment("1.dkr.ecr.us-east-1.amazonaws.com/my-image:2").kind == "host"
    command = environments.environment("runner:1")
    assert command.kind == "command" and command.argv(["python3", "s.py"]) == [
        "/opt/x/run",
        "--y",
        "s.py",
    ]
    assert describe(command) == "environment: runner (a command: /opt/x/run --y)"


def test_an_unknown_image_is_one_line_naming_the_setting(settings: Settings) -> None:
    with pytest.raises(ConfigError) as caught:
        StepEnvironments(settings).spec("1.dkr.ecr.us-east-1.amazonaws.com/odd:1")
    assert "\n" not in str(caught.value) and "[tool.sagepipe.images]" in str(caught.value)


def test_step_images_of_an_sdk_definition() -> None:
    definition = load(FIXTURES / "sdk" / "v2_full.json")
    assert definition_images(definition) == [SKLEARN]
    condition = definition.step("CheckMse")
    assert step_image(condition) is None
