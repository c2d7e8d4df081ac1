"""Built-in XGBoost's selectable inference output (``SAGEMAKER_INFERENCE_OUTPUT``).

With ``SAGEMAKER_INFERENCE_OUTPUT=predicted_label,probability`` the XGBoost image answers each
row with the selected keys, derived from the model's objective, instead of the bare prediction:
JSON ``{"predictions": [{...}, ...]}``, JSON Lines one object a line, CSV the values in the order
asked (a list quoted). Keys the objective has no value for are NaN. From
aws/sagemaker-xgboost-container ``algorithm_mode/serve_utils.py`` and ``serve.py`` (tag v1.7-1).
Standard library and numpy; Python 3.6 and up.
"""

# ruff: noqa: UP006, UP035  (typing generics: this file runs on Python 3.6)
import json
import math
from typing import Any, Dict, List

VARIABLE = "SAGEMAKER_INFERENCE_OUTPUT"
PREDICTED_LABEL, LABELS, PROBABILITY, PROBABILITIES = (
    "predicted_label",
    "labels",
    "probability",
    "probabilities",
)
RAW_SCORE, RAW_SCORES, PREDICTED_SCORE = "raw_score", "raw_scores", "predicted_score"
_CLASSIFICATION = [PREDICTED_LABEL, LABELS, RAW_SCORE, RAW_SCORES]
_PROBABILISTIC = [PREDICTED_LABEL, LABELS, PROBABILITY, PROBABILITIES, RAW_SCORE, RAW_SCORES]
_ORDER = [
    PREDICTED_LABEL,
    LABELS,
    PROBABILITY,
    PROBABILITIES,
    RAW_SCORE,
    RAW_SCORES,
    PREDICTED_SCORE,
]
VALID_OBJECTIVES = {
    "reg:squarederror": [PREDICTED_SCORE],
    "reg:logistic": [PREDICTED_SCORE],
    "reg:gamma": [PREDICTED_SCORE],
    "reg:absoluteerror": [PREDICTED_SCORE],
    "reg:tweedie": [PREDICTED_SCORE],
    "binary:logistic": _PROBABILISTIC,
    "binary:logitraw": _CLASSIFICATION,
    "binary:hinge": _CLASSIFICATION,
    "multi:softmax": _CLASSIFICATION,
    "multi:softprob": _PROBABILISTIC,
}


def selected_keys(value: str) -> List[str]:
    """``"predicted_label, Probability"`` -> ``["predicted_label", "probability"]``."""
    return value.replace(" ", "").lower().split(",")


def _value(key: str, objective: str, raw: Any, num_class: str) -> Any:
    """One selected key's value for one row's raw prediction (a number or a list of them)."""
    import numpy as np

    values = np.atleast_1d(raw)
    if key == PREDICTED_SCORE:
        return raw.item()
    if key == LABELS:
        if "binary:" in objective:
            return [0, 1]
        return list(range(int(num_class))) if "multi:" in objective and num_class else math.nan
    if key == PREDICTED_LABEL:
        if objective in ("binary:hinge", "multi:softmax"):
            return raw.item()
        if objective == "binary:logistic":
            return int(raw > 0.5)
        if objective == "binary:logitraw":
            return int(raw > 0)
        return int(np.argmax(values))  # multi:softprob
    if key in (PROBABILITY, RAW_SCORE):
        return float(max(values)) if objective == "multi:softprob" else raw.item()
    # probabilities, raw_scores
    if objective == "multi:softprob":
        return values.tolist()
    one = raw.item()
    return [1.0 - one, one]


def select_predictions(
    predictions: Any, keys: List[str], objective: str, num_class: str = ""
) -> List[Dict[str, Any]]:
    """Each row's selected keys; ValueError for an objective the image does not support."""
    if objective not in VALID_OBJECTIVES:
        raise ValueError(
            f"Objective `{objective}` unsupported for selectable inference predictions."
        )
    valid = VALID_OBJECTIVES[objective]
    rows = []
    for raw in predictions:
        row = {k: _value(k, objective, raw, num_class) for k in _ORDER if k in keys and k in valid}
        row.update((k, math.nan) for k in keys if k not in valid)
        rows.append(row)
    return rows


def encode_selected(rows: List[Dict[str, Any]], keys: List[str], accept: str, batch: bool) -> bytes:
    """The selected predictions in ``accept``'s format, as the image writes them."""
    if accept == "application/json":
        return json.dumps({"predictions": rows}).encode("utf-8")
    if accept == "application/jsonlines":
        return "".join(json.dumps(row) + "\n" for row in rows).encode("utf-8")
    if accept == "text/csv":
        lines = []
        for row in rows:
            cells = [f'"{row[k]}"' if isinstance(row[k], list) else str(row[k]) for k in keys]
            lines.append(",".join(cells))
        return ("\n".join(lines) + ("\n" if batch else "")).encode("utf-8")
    raise RuntimeError(f"Cannot encode selected predictions into accept type '{accept}'.")
