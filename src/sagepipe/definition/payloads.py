"""Function step payloads in the SageMaker SDK's format: cloudpickle bytes plus metadata.json.

The job side is the SDK's own ``sagemaker.remote_function.invoke_function`` (SDK v2, 2.256 and
later: a plain SHA-256 integrity hash, no key). It reads ``<dir>/payload.pkl`` and
``<dir>/metadata.json``, checks the hash and unpickles with cloudpickle. Pipeline variables
among the arguments travel as the SDK's placeholder classes
(``sagemaker.remote_function.core.pipeline_variables._ParameterString`` ...) which
invoke_function resolves from ``--property_references``; they are written here by name, so
unpickling them needs the SDK installed in the job, exactly as the SDK's own payloads do.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import os
import pickle
import sys
import sysconfig
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle

from sagepipe.core.expressions import (
    ExecutionVariable,
    Parameter,
    ParameterBoolean,
    ParameterFloat,
    ParameterInteger,
    ParameterString,
    Properties,
)
from sagepipe.core.functions import DelayedReturn, FunctionStep
from sagepipe.definition.function_payloads import METADATA_VERSION, metadata_json
from sagepipe.errors import PipelineError
from sagepipe.records import record

SDK_VARIABLES_MODULE = "sagemaker.remote_function.core.pipeline_variables"
PAYLOAD_FILE = "payload.pkl"
METADATA_FILE = "metadata.json"
_PARAMETER_CLASSES: dict[type[Parameter], str] = {
    ParameterString: "_ParameterString",
    ParameterInteger: "_ParameterInteger",
    ParameterFloat: "_ParameterFloat",
    ParameterBoolean: "_ParameterBoolean",
}


def client_python_version() -> str:
    """``major.minor`` of this interpreter: the job's Python must match it (``--client_python_version``)."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


class _SdkModule:
    """The SDK's pipeline-variables module, imported when the payload is unpickled."""

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return (importlib.import_module, (SDK_VARIABLES_MODULE,))


class _SdkClass:
    """A class of that module, looked up by name when the payload is unpickled."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: object) -> object:  # pickle wants a callable; never called here
        raise TypeError(f"{self.name} exists only in the job")

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[object, str]]:
        return (getattr, (_SdkModule(), self.name))


@record
class SdkPlaceholder:
    """An instance of an SDK placeholder class: ``_ParameterString("Label")`` in the job."""

    class_name: str
    args: tuple[object, ...]

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[object, ...]]:
        return (_SdkClass(self.class_name), self.args)


def placeholder(value: object) -> object:
    """What the job receives for an argument: the SDK placeholder of a pipeline variable, or
    the value itself."""
    if isinstance(value, DelayedReturn):
        uri = SdkPlaceholder("_Properties", (_get(value.output_path),))
        return SdkPlaceholder("_DelayedReturn", (uri, value.reference_path))
    if isinstance(value, Parameter):
        return SdkPlaceholder(_PARAMETER_CLASSES[type(value)], (value.name,))
    if isinstance(value, ExecutionVariable):
        return SdkPlaceholder("_ExecutionVariable", (value.name,))
    if isinstance(value, Properties):
        return SdkPlaceholder("_Properties", (_get(value),))
    return value


def _get(value: Properties) -> str:
    expr = value.expr
    assert isinstance(expr, dict)
    return str(expr["Get"])


class _Pickler(cloudpickle.CloudPickler):  # type: ignore[misc]  # cloudpickle is untyped
    """cloudpickle, with the project's file paths written relative to the project.

    Code pickled by value carries its file name (``co_filename``, the module's ``__file__``);
    written relative to ``root``, the same project compiled from another folder (a CI runner, a
    colleague's checkout) gives the same bytes, so the step's URIs and SageMaker's cache hold.
    """

    def __init__(self, buffer: io.BytesIO, root: Path | None) -> None:
        super().__init__(buffer, protocol=cloudpickle.DEFAULT_PROTOCOL)
        self._root = root
        # The C pickler reads its table at construction: set it through the slot, as the SDK
        # sets its own dispatch table.
        slot: Any = vars(pickle.Pickler)["dispatch_table"]
        table = slot.__get__(self)
        reduce_code = table[types.CodeType]
        slot.__set__(self, table.new_child({types.CodeType: lambda c: reduce_code(self._code(c))}))

    def _relative(self, name: str) -> str:
        if not os.path.isabs(name):
            return name
        path = Path(name)
        if self._root is not None and path.is_relative_to(self._root):
            return path.relative_to(self._root).as_posix()
        # A notebook cell's code names a file of the kernel's process (ipykernel_<pid>/...)
        # that is not on disk: one name for all, so a new kernel gives the same payload.
        return name if path.is_file() else "<interactive>"

    def _code(self, code: types.CodeType) -> types.CodeType:
        return code.replace(co_filename=self._relative(code.co_filename))

    def _function_getnewargs(self, func: Any) -> Any:
        code, base_globals, name, defaults, closure = super()._function_getnewargs(func)
        if isinstance(base_globals.get("__file__"), str):
            base_globals["__file__"] = self._relative(base_globals["__file__"])
        return code, base_globals, name, defaults, closure


def dumps(obj: object, root: Path | None = None) -> bytes:
    """cloudpickle bytes, at cloudpickle's default protocol as the SDK writes them; file paths
    under ``root`` are written relative to it."""
    buffer = io.BytesIO()
    _Pickler(buffer, root.resolve() if root is not None else None).dump(obj)
    return buffer.getvalue()


def metadata(payload: bytes) -> bytes:
    """The ``metadata.json`` next to a payload, key for key as the SDK writes it."""
    return metadata_json(payload, "{}.{}.{}".format(*sys.version_info[:3]))


@record
class FunctionPayload:
    """The two pickles of a function step: the function, and ``(args, kwargs)``."""

    function: bytes
    arguments: bytes


def serialize_step(step: FunctionStep, root: Path | None = None) -> FunctionPayload:
    """Pickle the step's function (by value, with its module) and its arguments; file paths
    under ``root`` (the project) are written relative to it.

    Raises:
        PipelineError: naming the argument or the function that cannot be pickled.
    """
    labels = [f"argument {i + 1}" for i in range(len(step.args))]
    labels += [f"argument {k!r}" for k in step.kwargs]
    converted = [placeholder(v) for v in step.arguments]
    for label, value, original in zip(labels, converted, step.arguments, strict=True):
        try:
            dumps(value)
        except Exception as exc:
            raise PipelineError(
                f"function step '{step.name}': {label} ({type(original).__name__}) cannot be "
                f"pickled: {_reason(exc)}; pass plain data and build such objects inside the "
                "function"
            ) from None
    args = tuple(converted[: len(step.args)])
    kwargs = dict(zip(step.kwargs, converted[len(step.args) :], strict=True))
    func = step.function
    try:
        with _by_value(func):
            function = dumps(func, root)
    except Exception as exc:
        raise PipelineError(
            f"function step '{step.name}': function {func.__qualname__} (module "
            f"{func.__module__}) cannot be pickled: {_reason(exc)}; it or a global it uses "
            "holds such an object: create it inside the function"
        ) from None
    return FunctionPayload(function, dumps((args, kwargs)))


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]


@contextlib.contextmanager
def _by_value(func: Callable[..., Any]) -> Iterator[None]:
    """Pickle the function's own module by value while ``func`` is dumped.

    The job has none of the project's files: the function, and the functions and classes of
    its module it uses, travel in the payload. Installed packages (the standard library,
    site-packages) stay references, to be installed in the job through ``dependencies``.
    ``__main__`` (a script, a notebook) is pickled by value by cloudpickle already.
    """
    module = sys.modules.get(func.__module__)
    file = getattr(module, "__file__", None)
    if module is None or func.__module__ == "__main__" or file is None or _installed(file):
        yield
        return
    already = func.__module__ in cloudpickle.list_registry_pickle_by_value()
    if not already:
        cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        if not already:
            cloudpickle.unregister_pickle_by_value(module)


def _installed(file: str) -> bool:
    path = Path(file).resolve()
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return any(path.is_relative_to(Path(root).resolve()) for root in roots)


def read_payload(payload: bytes, metadata_json: bytes, where: str = "payload") -> Any:
    """Unpickle a payload the SDK format describes (a function step's results, say), after
    checking its ``metadata.json``: format version, serializer and SHA-256.

    Only read payloads from a bucket you trust: unpickling runs code.

    Raises:
        PipelineError: naming ``where`` when the metadata or the hash does not match.
    """
    try:
        info = json.loads(metadata_json)
    except ValueError:
        raise PipelineError(f"{where}: metadata.json is not JSON") from None
    if not isinstance(info, dict) or not info.get("sha256_hash"):
        raise PipelineError(f"{where}: metadata.json has no sha256_hash")
    if info.get("version") != METADATA_VERSION or info.get("serialization_module") != "cloudpickle":
        raise PipelineError(
            f"{where}: metadata.json describes {info.get('serialization_module')!r} version "
            f"{info.get('version')!r}; expected cloudpickle {METADATA_VERSION}"
        )
    if hashlib.sha256(payload).hexdigest() != info["sha256_hash"]:
        raise PipelineError(f"{where}: payload.pkl does not match the SHA-256 in metadata.json")
    return cloudpickle.loads(payload)
