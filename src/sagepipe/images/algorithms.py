"""Built-in algorithm mode: which training steps run an image's own algorithm, and how.

A training step on a SageMaker XGBoost image with no ``sagemaker_program`` hyperparameter runs
the image's built-in XGBoost ("algorithm mode"), not a user script. Locally that is the container
program ``sagepipe/container/xgboost_algorithm.py``, run as a file on the image environment's
Python. SageMaker registers metric definitions for the built-in algorithm itself (they are in
every DescribeTrainingJob of such a job); :func:`metric_definitions` gives them, so the runner can
apply them to the log when the request names none.
"""

from __future__ import annotations

from collections.abc import Mapping

from sagepipe.images.match import find_entry, parse_image_uri

XGBOOST = "xgboost"
PROGRAMS = {XGBOOST: "xgboost_algorithm.py"}

# The names SageMaker registers for built-in XGBoost, with one regex shape. Two observed lists,
# joined: a DescribeTrainingJob of a sagemaker-xgboost:1.5-1 job (2025: 27 names, no auc) and a
# DescribeHyperParameterTuningJob's training job definition on a 2020 XGBoost image (34 names
# plus the tuner's own ObjectiveMetric, left out here). `#011` is how CloudWatch shows the tab
# the image prints between metrics; the runner reads it as a tab.
_XGBOOST_METRICS = {
    "train": (
        "accuracy", "auc", "aucpr", "cox-nloglik", "error", "f1", "gamma-deviance",
        "gamma-nloglik", "logloss", "mae", "map", "merror", "mlogloss", "mse", "ndcg",
        "poisson-nloglik", "rmse", "tweedie-nloglik",
    ),
    "validation": (
        "accuracy", "auc", "aucpr", "cox-nloglik", "error", "f1", "gamma-deviance",
        "gamma-nloglik", "logloss", "mae", "map", "merror", "mlogloss", "mse", "ndcg",
        "poisson-nloglik", "r2", "rmse", "tweedie-nloglik",
    ),
}  # fmt: skip
_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def algorithm_mode(image_uri: str, hyperparameters: Mapping[str, object]) -> str | None:
    """The built-in algorithm a training step runs (``"xgboost"``), or None for script mode.

    Args:
        image_uri: the step's ``AlgorithmSpecification.TrainingImage``.
        hyperparameters: the step's HyperParameters (only the keys are read).
    """
    if "sagemaker_program" in hyperparameters:
        return None
    ref = parse_image_uri(image_uri)
    entry = find_entry(ref)
    if entry is not None:
        return XGBOOST if entry.family == XGBOOST and entry.mode == "algorithm" else None
    return XGBOOST if ref.repository.rsplit("/", 1)[-1] == "sagemaker-xgboost" else None


def algorithm_command(algorithm: str, runtime: list[str], program_path: str) -> list[str]:
    """The command that runs ``algorithm`` in the step: the image's Python and the program file.

    ``--root /opt/ml`` is spelled out so that the process sandbox, which rewrites ``/opt/ml`` in
    arguments, points the program at the step's workspace.

    Args:
        algorithm: what :func:`algorithm_mode` returned.
        runtime: the image environment's interpreter command (``[".../bin/python"]``).
        program_path: where the step sees :data:`PROGRAMS` ``[algorithm]`` (the sandbox's
            ``program(name)``).
    """
    if algorithm not in PROGRAMS:
        raise ValueError(f"no built-in algorithm {algorithm!r}; known: {', '.join(PROGRAMS)}")
    return [*runtime, program_path, "--root", "/opt/ml"]


def metric_definitions(algorithm: str) -> list[dict[str, str]]:
    """The MetricDefinitions SageMaker applies to the built-in ``algorithm``'s log."""
    if algorithm != XGBOOST:
        return []
    return [
        {
            "Name": f"{channel}:{metric}",
            "Regex": rf".*\[[0-9]+\].*#011{channel}-{metric}:{_NUMBER}.*",
        }
        for channel, metrics in _XGBOOST_METRICS.items()
        for metric in metrics
    ]
