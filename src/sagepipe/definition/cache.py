"""Step caching as SageMaker documents it: a key over the job's defining arguments.

Shared by the local engine (to find hits) and the SageMaker dry run (to predict them).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping

from sagepipe.core.graph import scan
from sagepipe.core.json_types import JSON
from sagepipe.errors import DefinitionError, SagepipeError
from sagepipe.records import record

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


# -- why a step missed: the cache fields of two runs, compared field by field ---------------

SHOWN_CHARS = 60  # a value longer than this is cut in explanations (parameters can be huge)
_CODE_NAMES = ("code", "sm_drivers")  # the inputs/channels that carry the step's code


@record
class Change:
    """One difference between two runs of a step that alters its cache key.

    ``kind`` is one of: script, parameter, input, image, environment, hyperparameter,
    entry point, arguments, setting. ``where`` is the unresolved argument the change sits in
    (to find the parameters and steps it reads).
    """

    kind: str
    name: str
    old: JSON = None
    new: JSON = None
    where: tuple[str, ...] = ()

    def text(self) -> str:
        """One phrase, e.g. ``parameter TestFraction 0.2 → 0.3`` or ``script train.py``."""
        if self.kind == "script":
            return f"script {self.name} changed"
        if self.kind == "upstream":
            return f"input {self.name}: step {self.new} ran again"
        label = f"{self.kind} {self.name}".strip()
        if self.kind == "image":
            return f"image {shown(_image(self.old))} → {shown(_image(self.new))}"
        if self.old is None and self.new is not None:
            return f"{label} added ({shown(self.new)})"
        if self.new is None and self.old is not None:
            return f"{label} removed (was {shown(self.old)})"
        return f"{label} {shown(self.old)} → {shown(self.new)}"


def _image(value: JSON) -> JSON:
    """An image URI as ``repository:tag`` (the registry host says nothing to a person)."""
    return value.rsplit("/", 1)[-1] if isinstance(value, str) else value


def shown(value: JSON) -> str:
    """``value`` as short text: strings bare, others as JSON, cut to SHOWN_CHARS."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if len(text) > SHOWN_CHARS:
        return f"{text[: SHOWN_CHARS - 1]}… ({len(text)} chars)"
    return text


def explain_miss(
    step_type: str,
    arguments: Mapping[str, JSON],
    old_fields: Mapping[str, JSON],
    new_fields: Mapping[str, JSON],
    old_parameters: Mapping[str, JSON],
    new_parameters: Mapping[str, JSON],
) -> list[Change]:
    """What changed between two runs' cache fields, named for a person.

    ``arguments`` are the step's unresolved arguments (its definition): a change inside a
    part that reads a pipeline parameter whose value differs is reported as that parameter
    (old → new); one that reads an upstream step's output as that step having run again.
    """
    out: list[Change] = []
    for change in field_changes(step_type, old_fields, new_fields):
        part = _part(arguments, change.where)
        for cause in _causes(change, part, old_parameters, new_parameters):
            if cause not in out:
                out.append(cause)
    return out


def _part(arguments: Mapping[str, JSON], keys: tuple[str, ...]) -> JSON:
    """The unresolved piece of ``arguments`` at ``path`` (a list of keys; a list item is
    named by ``[field, name_key, name]``)."""
    value: JSON = dict(arguments)
    i = 0
    while i < len(keys):
        key = keys[i]
        if isinstance(value, list) and i + 1 < len(keys):  # [.., name_key, name]
            wanted = keys[i + 1]
            value = next((v for v in value if _as_dict(v).get(key) == wanted), None)
            i += 2
            continue
        value = _as_dict(value).get(key)
        i += 1
    return value


def describe_changes(changes: list[Change]) -> str:
    """The changes as one phrase; inputs fed by the same rerun upstream step go together."""
    order = {"script": 0, "parameter": 1, "upstream": 3}
    changes = sorted(changes, key=lambda c: order.get(c.kind, 2))
    upstream: dict[str, list[str]] = {}
    for c in changes:
        if c.kind == "upstream":
            upstream.setdefault(str(c.new), []).append(c.name)
    texts: list[str] = []
    for c in changes:
        if c.kind != "upstream":
            texts.append(c.text())
        elif str(c.new) in upstream:
            names = upstream.pop(str(c.new))
            label = "input" if len(names) == 1 else "inputs"
            texts.append(f"{label} {', '.join(names)}: step {c.new} ran again")
    return "; ".join(texts)


def _causes(
    change: Change,
    part: JSON,
    old_parameters: Mapping[str, JSON],
    new_parameters: Mapping[str, JSON],
) -> list[Change]:
    try:
        refs = scan(part)
    except SagepipeError:  # a malformed Get: the field change itself is the explanation
        return [change]
    params = [
        Change("parameter", name, old_parameters.get(name), new_parameters.get(name))
        for name in dict.fromkeys(n for n, _ in refs.parameters)
        if old_parameters.get(name) != new_parameters.get(name)
    ]
    if params:
        return params
    if change.kind == "input" and refs.steps:
        return [Change("upstream", change.name, None, refs.steps[0].target)]
    return [change]


def field_changes(step_type: str, old: Mapping[str, JSON], new: Mapping[str, JSON]) -> list[Change]:
    """The differences between two runs' cache fields (resolved), by what they mean."""
    out: list[Change] = []
    for name in CACHE_FIELDS.get(step_type, ()):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        if name == "Environment":
            out += _mapping_changes("environment", a, b, name)
        elif name == "AppSpecification":
            out += _app_changes(a, b)
        elif name == "AlgorithmSpecification":
            out += _algorithm_changes(a, b)
        elif name == "HyperParameters":
            out += _hyperparameter_changes(a, b)
        elif name in ("ProcessingInputs", "InputDataConfig"):
            out += _input_changes(name, a, b)
        else:
            out.append(Change("setting", name, a, b, (name,)))
    if any(c.kind == "script" for c in out):  # the entry point names the script file
        out = [c for c in out if c.kind != "entry point"]
    return out


def _as_dict(value: JSON) -> dict[str, JSON]:
    return dict(value) if isinstance(value, dict) else {}


def _mapping_changes(kind: str, a: JSON, b: JSON, field: str) -> list[Change]:
    old, new = _as_dict(a), _as_dict(b)
    return [
        Change(kind, key, old.get(key), new.get(key), (field, key))
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


def _app_changes(a: JSON, b: JSON) -> list[Change]:
    old, new = _as_dict(a), _as_dict(b)
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        kind = {
            "ImageUri": "image",
            "ContainerEntrypoint": "entry point",
            "ContainerArguments": "arguments",
        }.get(key, "setting")
        name = "" if kind != "setting" else key
        out.append(Change(kind, name, old.get(key), new.get(key), ("AppSpecification", key)))
    return out


def _algorithm_changes(a: JSON, b: JSON) -> list[Change]:
    old, new = _as_dict(a), _as_dict(b)
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        kind = {"TrainingImage": "image", "ContainerEntrypoint": "entry point"}.get(key)
        name = "" if kind else key
        where = ("AlgorithmSpecification", key)
        out.append(Change(kind or "setting", name, old.get(key), new.get(key), where))
    return out


def _hyperparameter_changes(a: JSON, b: JSON) -> list[Change]:
    old, new = _as_dict(a), _as_dict(b)
    out = []
    code_keys = ("sagemaker_submit_directory", "sagemaker_program")
    if any(old.get(k) != new.get(k) for k in code_keys):
        program = new.get("sagemaker_program") or old.get("sagemaker_program")
        name = json.loads(program) if isinstance(program, str) and program[:1] == '"' else program
        out.append(Change("script", str(name), where=("HyperParameters",)))
    for key in sorted(set(old) | set(new)):
        if key not in code_keys and old.get(key) != new.get(key):
            out.append(
                Change("hyperparameter", key, old.get(key), new.get(key), ("HyperParameters", key))
            )
    return out


def _input_changes(field: str, a: JSON, b: JSON) -> list[Change]:
    name_key = "InputName" if field == "ProcessingInputs" else "ChannelName"
    old, new = _named(a, name_key), _named(b, name_key)
    out = []
    for name in list(dict.fromkeys([*old, *new])):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        where = (field, name_key, name)
        uri_a, uri_b = input_uri(before), input_uri(after)
        if name in _CODE_NAMES and uri_a != uri_b and uri_b:
            out.append(Change("script", uri_b.rstrip("/").rsplit("/", 1)[-1], where=where))
        elif before is None or after is None or uri_a != uri_b:
            out.append(Change("input", name, uri_a, uri_b, where))
        else:
            out.append(Change("input", f"{name} settings", shown(before), shown(after), where))
    return out


def _named(value: JSON, key: str) -> dict[str, JSON]:
    items = value if isinstance(value, list) else []
    return {str(_as_dict(item).get(key, i)): item for i, item in enumerate(items)}


def input_uri(item: JSON) -> str | None:
    """The S3 URI of a ProcessingInput or a training channel (None when it has none)."""
    spec = _as_dict(item)
    for path in (("S3Input", "S3Uri"), ("DataSource", "S3DataSource", "S3Uri")):
        value: JSON = spec
        for key in path:
            value = _as_dict(value).get(key)
        if isinstance(value, str):
            return value
    return None


def input_data_type(item: JSON) -> str:
    """S3Prefix (the default) or ManifestFile, for a ProcessingInput or a training channel."""
    spec = _as_dict(item)
    inner = _as_dict(spec.get("S3Input")) or _as_dict(
        _as_dict(spec.get("DataSource")).get("S3DataSource")
    )
    value = inner.get("S3DataType")
    return value if isinstance(value, str) else "S3Prefix"


def step_inputs(step_type: str, arguments: Mapping[str, JSON]) -> list[tuple[str, str, str]]:
    """(name, S3 URI, S3DataType) of every S3 input of a Processing or Training step."""
    field, key = {
        "Processing": ("ProcessingInputs", "InputName"),
        "Training": ("InputDataConfig", "ChannelName"),
    }.get(step_type, ("", ""))
    items = arguments.get(field) if field else None
    out = []
    for item in items if isinstance(items, list) else []:
        uri = input_uri(item)
        if uri:
            out.append((str(_as_dict(item).get(key, "")), uri, input_data_type(item)))
    return out
