"""Step caching as SageMaker documents it: a key over the job's defining arguments.

Shared by the local engine (to find hits) and the SageMaker dry run (to predict them).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping

from sagepipe.core.json_types import JSON
from sagepipe.errors import DefinitionError

# The request fields SageMaker compares to decide a cache hit, per step type.
CACHE_FIELDS: dict[str, tuple[str, ...]] = {
    "Processing": ("AppSpecification", "Environment", "ProcessingInputs"),
    "Training": (
        "AlgorithmSpecification",
        "CheckpointConfig",
        "DebugHookConfig",
        "DebugRuleConfigurations",
        "Environment",
        "HyperParameters",
        "InputDataConfig",
    ),
}
_DURATION = re.compile(
    r"^P(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<mi>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)


def cache_fields(step_type: str, arguments: Mapping[str, JSON]) -> dict[str, JSON] | None:
    """The request fields SageMaker compares for ``step_type`` (None: the type never caches)."""
    fields = CACHE_FIELDS.get(step_type)
    if fields is None:
        return None
    return {f: arguments.get(f) for f in fields}


def cache_key(step_type: str, arguments: Mapping[str, JSON]) -> str | None:
    """The cache key of a resolved step, or None for step types that do not cache."""
    fields = CACHE_FIELDS.get(step_type)
    if fields is None:
        return None
    subset = {f: arguments.get(f) for f in fields}
    blob = json.dumps([step_type, subset], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def expire_seconds(text: JSON) -> float | None:
    """Seconds in an ISO 8601 duration such as ``P30D`` or ``PT1H`` (None: never expires).

    Raises:
        DefinitionError: when ``text`` is not such a duration.
    """
    if text is None or text == "":
        return None
    m = _DURATION.match(text) if isinstance(text, str) else None
    if not m or not any(m.groupdict().values()):
        raise DefinitionError(
            f"ExpireAfter {text!r} is not an ISO 8601 duration such as P30D or PT12H"
        )
    g = {k: int(v or 0) for k, v in m.groupdict().items()}
    days = g["y"] * 365 + g["mo"] * 30 + g["w"] * 7 + g["d"]
    return float(days * 86400 + g["h"] * 3600 + g["mi"] * 60 + g["s"])


def cache_since(cache_config: Mapping[str, JSON] | None) -> float | None:
    """The earliest start time a cached run may have, or None when caching is off."""
    if not cache_config or not cache_config.get("Enabled"):
        return None
    window = expire_seconds(cache_config.get("ExpireAfter"))
    return 0.0 if window is None else time.time() - window
