"""Run a SageMaker ``@step`` function inside its step, as the SDK's bootstrap and invoker do.

Started by the engine on the image environment's Python with the step's ContainerArguments
(``--s3_base_uri``, ``--client_python_version``, ``--property_references`` key value ...). The
engine has already read the payloads from the store, checked them and staged them:

- ``/opt/ml/input/function/function`` and ``.../arguments``: ``payload.pkl`` + ``metadata.json``
- ``/opt/ml/input/function/returns.json``: results URI -> staged folder (relative to
  ``/opt/ml/input/function``), for the return values of other functions passed as arguments

and it publishes what this program writes under ``/opt/ml/output/function``: ``results/``
(``payload.pkl``, ``metadata.json``, ``results.json`` when asked) or ``exception/``. The
exception's ``repr`` goes to ``/opt/ml/output/failure`` and its traceback to stderr.

Standard library and cloudpickle (the image's) only; it imports nothing of sagepipe.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import pickle
import sys
from typing import Any

# Every step pays this program's start-up: modules only some steps need are imported there.

# The training toolkit's variables name the folders (a sandbox without mounts moves them).
INPUT = os.environ.get("SM_INPUT_DIR", "/opt/ml/input")
STAGED = os.path.join(INPUT, "function")
CHANNELS = os.path.join(INPUT, "data")
OUTPUT = os.path.join(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output"), "function")
FAILURE = os.path.join(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output"), "failure")
DEPENDENCIES_CHANNEL = "pre_exec_script_and_dependencies"
WORKSPACE = "sagemaker_remote_function_workspace"
PRE_EXEC = "pre_exec.sh"
VARIABLE_MODULES = (
    "sagemaker.remote_function.core.pipeline_variables",
    "sagemaker.core.remote_function.core.pipeline_variables",
)


class RuntimeEnvironmentError(Exception):
    """The job's environment cannot run the function (the SDK's name for it)."""


class DeserializationError(Exception):
    """A staged payload cannot be read (the SDK's name for it)."""


class _Placeholder:
    """Stands for the SDK's pickled pipeline variables (dataclasses in the SDK).

    The SDK's own payloads rebuild them from pickle state; payloads written without the SDK
    may call the class with the dataclass's fields instead, so both work.
    """

    FIELDS: tuple[str, ...] = ()
    name: str = ""
    path: str = ""
    uri: Any = None
    reference_path: tuple[Any, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        for index, value in enumerate(args[: len(self.FIELDS)]):  # zip(strict=) is 3.10+
            self.__dict__[self.FIELDS[index]] = value
        self.__dict__.update(kwargs)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple):  # (dict state, slots state)
            state = state[0] or {}
        self.__dict__.update(state or {})


class _Parameter(_Placeholder):
    FIELDS = ("name",)


class _ParameterInteger(_Parameter):
    pass


class _ParameterFloat(_Parameter):
    pass


class _ParameterString(_Parameter):
    pass


class _ParameterBoolean(_Parameter):
    pass


class _Properties(_Placeholder):
    FIELDS = ("path",)


class _ExecutionVariable(_Placeholder):
    FIELDS = ("name",)


class _S3BaseUriIdentifier(_Placeholder):
    pass


class _DelayedReturn(_Placeholder):
    FIELDS = ("uri", "reference_path")


_STANDINS = {
    cls.__name__: cls
    for cls in (
        _Parameter,
        _ParameterInteger,
        _ParameterFloat,
        _ParameterString,
        _ParameterBoolean,
        _Properties,
        _ExecutionVariable,
        _S3BaseUriIdentifier,
        _DelayedReturn,
    )
}


class _VariablesModule:
    """The SDK's pipeline-variables module, as the stand-ins."""

    def __getattr__(self, name: str) -> Any:
        if name in _STANDINS:
            return _STANDINS[name]
        raise DeserializationError(f"unknown pipeline variable {name}")


def _import_module(name: str, package: str | None = None) -> Any:
    """``importlib.import_module``, with the SDK's pipeline-variables module stood in for."""
    if name in VARIABLE_MODULES:
        return _VariablesModule()
    import importlib

    return importlib.import_module(name, package)


class _Unpickler(pickle.Unpickler):
    """cloudpickle's payloads, with the SDK's placeholder classes read as the stand-ins."""

    def find_class(self, module: str, name: str) -> Any:
        if module in VARIABLE_MODULES:
            return getattr(_VariablesModule(), name)
        if (module, name) == ("importlib", "import_module"):
            return _import_module  # payloads that name the module in a call, not a global
        return super().find_class(module, name)


class Arguments:
    """The SDK's container arguments this program reads (the others are the bootstrap's)."""

    def __init__(self, argv: list[str]) -> None:
        options: dict[str, str] = {}
        self.property_references: list[str] = []
        i = 0
        while i < len(argv):
            name = argv[i]
            if name == "--property_references":
                i += 1
                while i < len(argv) and not argv[i].startswith("--"):
                    self.property_references.append(argv[i])
                    i += 1
                continue
            if name.startswith("--") and i + 1 < len(argv):
                options[name[2:]] = argv[i + 1]
                i += 2
                continue
            i += 1
        for required in ("s3_base_uri", "client_python_version"):
            if required not in options:
                raise RuntimeEnvironmentError(f"the argument --{required} is required")
        self.s3_base_uri = options["s3_base_uri"]
        self.client_python_version = options["client_python_version"]
        self.serialize_output_to_json = options.get("serialize_output_to_json", "false")
        self.build_dir = options.get("func_step_s3_dir")


def _read_payload(folder: str) -> Any:
    """Unpickle ``folder/payload.pkl`` after checking its SHA-256 against ``metadata.json``."""
    with open(os.path.join(folder, "metadata.json"), "rb") as fh:
        expected = json.load(fh).get("sha256_hash", "")
    with open(os.path.join(folder, "payload.pkl"), "rb") as fh:
        data = fh.read()
    # The engine checked signatures before staging; the SHA-256 (or, for some 2.x releases, the
    # HMAC with the step's secret) confirms these are the bytes it checked.
    digest = hashlib.sha256(data).hexdigest()
    secret = os.environ.get("REMOTE_FUNCTION_SECRET_KEY", "")
    if secret and "BEGIN PUBLIC KEY" not in secret and digest != expected:
        digest = hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(digest, expected):
        raise DeserializationError(
            "Integrity check for the serialized function or data failed. "
            "Please restrict access to your S3 bucket"
        )
    import cloudpickle  # noqa: F401  (its reconstructors, found by name while unpickling)

    return _Unpickler(io.BytesIO(data)).load()


def _join(*parts: str) -> str:
    kept = [p for p in parts if p]
    scheme = "s3://" if kept and kept[0].startswith("s3://") else ""
    if scheme:
        kept[0] = kept[0][5:]
    return scheme + "/".join(p.strip("/") for p in kept if p.strip("/"))


class _Resolver:
    """Resolves the placeholders among the top-level arguments, as the SDK does."""

    def __init__(self, references: dict[str, str], base_uri: str) -> None:
        self.references = references
        self.base_uri = base_uri
        with open(os.path.join(STAGED, "returns.json")) as fh:
            self.returns: dict[str, str] = json.load(fh)
        self.loaded: dict[str, Any] = {}

    def reference(self, key: str) -> str:
        if key not in self.references:
            raise RuntimeEnvironmentError(f"no value for {key} among --property_references")
        return self.references[key]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, _Parameter):
            raw = self.reference(f"Parameters.{value.name}")
            if isinstance(value, _ParameterInteger):
                return int(raw)
            if isinstance(value, _ParameterFloat):
                return float(raw)
            if isinstance(value, _ParameterString):
                return raw
            return raw == "true"
        if isinstance(value, _ExecutionVariable):
            return self.reference(f"Execution.{value.name}")
        if isinstance(value, _Properties):
            return self.reference(value.path)
        if isinstance(value, _DelayedReturn):
            result = self._returned(self._uri(value))
            for _operation, key in value.reference_path:
                result = result[key]
            return result
        return value

    def _uri(self, delayed: _DelayedReturn) -> str:
        if isinstance(delayed.uri, _Properties):
            return self.reference(delayed.uri.path)
        parts = []
        for part in delayed.uri:
            if isinstance(part, _S3BaseUriIdentifier):
                parts.append(self.base_uri)
            else:
                parts.append(str(self.resolve(part)))
        return _join(*parts)

    def _returned(self, uri: str) -> Any:
        if uri not in self.loaded:
            folder = self.returns.get(uri.rstrip("/"))
            if folder is None:
                raise RuntimeEnvironmentError(f"the return value at {uri} was not staged")
            self.loaded[uri] = _read_payload(os.path.join(STAGED, folder))
        return self.loaded[uri]


def _check_python(client: str) -> None:
    job = f"{sys.version_info.major}.{sys.version_info.minor}"
    if client.strip() != job:
        raise RuntimeEnvironmentError(
            f"Python version found in the container is '{job}' which does not match python "
            f"version '{client.strip()}' on the local client. Please make sure that the python "
            "version used in the training container is same as the local python version."
        )


def _prepare_workspace(build_dir: str | None) -> str:
    """The SDK's job workspace: the user's workdir archive if staged, then the pre-exec script."""
    archive = os.path.join(CHANNELS, build_dir or "sm_rf_user_ws", "workspace.zip")
    if os.path.isfile(archive):
        import zipfile

        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                target = os.path.realpath(os.path.join(os.getcwd(), member))
                if not target.startswith(os.getcwd() + os.sep):
                    raise RuntimeEnvironmentError(f"workspace.zip member {member!r} escapes")
            zf.extractall(os.getcwd())
    workspace = os.path.abspath(WORKSPACE)
    os.makedirs(workspace, exist_ok=True)
    channel = os.path.join(CHANNELS, DEPENDENCIES_CHANNEL)
    if os.path.isdir(channel):
        import shutil

        for name in os.listdir(channel):
            source = os.path.join(channel, name)
            if os.path.isfile(source):
                shutil.copy(source, os.path.join(workspace, name))
    script = os.path.join(workspace, PRE_EXEC)
    if os.path.isfile(script):
        print(f"INFO: running pre-execution commands in '{script}'", flush=True)
        import subprocess

        done = subprocess.run(["/bin/bash", "-eu", script], cwd=workspace, stderr=subprocess.PIPE)
        if done.returncode:
            reason = done.stderr.decode(errors="replace").strip()
            sys.stderr.write(reason + "\n")
            raise RuntimeEnvironmentError(
                f"Encountered error while running pre-execution commands. Reason: {reason}"
            )
    return workspace


def _write(folder: str, payload: bytes, extra: dict[str, str] | None = None) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "payload.pkl"), "wb") as fh:
        fh.write(payload)
    version = ".".join(str(v) for v in sys.version_info[:3])
    metadata = {
        "sha256_hash": hashlib.sha256(payload).hexdigest(),
        "version": "2023-04-24",
        "python_version": version,
        "serialization_module": "cloudpickle",
    }
    with open(os.path.join(folder, "metadata.json"), "wb") as fh:
        fh.write(json.dumps(metadata).encode())
    for name, text in (extra or {}).items():
        with open(os.path.join(folder, name), "w") as fh:
            fh.write(text)


def _results_json(value: Any) -> str:
    try:
        return json.dumps({"Result": value, "Exception": None})
    except TypeError as exc:
        if "is not JSON serializable" not in str(exc):
            raise
        message = f"The function return ({value}) is not JSON serializable."
        return json.dumps({"Result": None, "Exception": message})


def _invoke(args: Arguments) -> None:
    _check_python(args.client_python_version)
    workspace = _prepare_workspace(args.build_dir)
    os.chdir(workspace)
    sys.path.insert(0, workspace)
    print("INFO: Deserializing function code and arguments", flush=True)
    func = _read_payload(os.path.join(STAGED, "function"))
    func_args, func_kwargs = _read_payload(os.path.join(STAGED, "arguments"))
    pairs = args.property_references
    references = {pairs[i]: pairs[i + 1] for i in range(0, len(pairs) - 1, 2)}
    resolver = _Resolver(references, args.s3_base_uri)
    resolved = tuple(resolver.resolve(a) for a in func_args or ())
    resolved_kw = {k: resolver.resolve(v) for k, v in (func_kwargs or {}).items()}
    print("INFO: Invoking the function", flush=True)
    result = func(*resolved, **resolved_kw)
    import cloudpickle

    extra = None
    if str(args.serialize_output_to_json).lower() == "true":
        extra = {"results.json": _results_json(result)}
    _write(os.path.join(OUTPUT, "results"), cloudpickle.dumps(result), extra)
    print("INFO: Serialized the function return", flush=True)


def _fail(error: BaseException) -> int:
    import traceback

    traceback.print_exc()
    if not os.path.exists(FAILURE):  # as the SDK: the bootstrap's errors, else the repr
        if isinstance(error, RuntimeEnvironmentError):
            reason = f"RuntimeEnvironmentError: {error}"
        else:
            reason = repr(error)
        with open(FAILURE, "w") as fh:
            fh.write(reason)
    try:
        import cloudpickle

        try:
            from tblib import pickling_support  # the SDK keeps the traceback where it can

            pickling_support.install(error)
        except ImportError:
            pass
        _write(os.path.join(OUTPUT, "exception"), cloudpickle.dumps(error))
    except Exception as exc:  # the failure file and the log still say what happened
        sys.stderr.write(f"the exception could not be serialized: {exc!r}\n")
    code = getattr(error, "errno", 1)
    return code if isinstance(code, int) and 0 < code < 256 else 1


def main(argv: list[str]) -> int:
    """Invoke the staged function; 0 on success, the SDK's exit code on an exception."""
    try:
        _invoke(Arguments(argv))
    except Exception as error:
        return _fail(error)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
