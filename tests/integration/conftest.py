"""Fixtures shared by the integration tests: image environments built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from sagepipe.images import Environment, ensure_environment, resolve

SKLEARN_1_2_1 = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
XGBOOST_1_7_1 = "246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-xgboost:1.7-1"


@pytest.fixture(scope="session")
def cache(image_cache: Path) -> Path:
    """The session's environment cache (tests/conftest.py): each image is built once."""
    return image_cache


@pytest.fixture(scope="session")
def xgb17(cache: Path) -> Environment:
    """The sagemaker-xgboost:1.7-1 image environment."""
    return ensure_environment(resolve(XGBOOST_1_7_1, {}), cache)


@pytest.fixture(scope="session")
def sklearn_env(cache: Path) -> Environment:
    """The sagemaker-scikit-learn:1.2-1 image environment."""
    return ensure_environment(resolve(SKLEARN_1_2_1, {}), cache)
