"""Function steps: ``@step`` turns a Python function into a SageMaker pipeline step.

As in the SageMaker SDK, calling a decorated function does not run it: it returns a
:class:`DelayedReturn` standing for the value the function will return when its step runs.
That value can be passed to other decorated functions, indexed (``result[0]``,
``result["key"]``), used in conditions and in classic steps' arguments. Each call becomes a
Training step that runs the SDK's ``invoke_function`` on the pickled function and arguments;
``sagepipe.definition`` compiles and serializes it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import field
from typing import Any, ClassVar, NoReturn

from sagepipe.core.expressions import (
    ExecutionVariable,
    Expression,
    Join,
    JsonGet,
    Parameter,
    PipelineValue,
    Properties,
    to_expr,
)
from sagepipe.core.json_types import JSON
from sagepipe.core.steps import CacheConfig, RetryPolicy, Step, StepOutput
from sagepipe.errors import PipelineError
from sagepipe.records import record

RESULTS_FILE = "results.json"
RESULT_KEY = "Result"
DEFAULT_MAX_RUNTIME = 24 * 60 * 60


@record
class FunctionSettings:
    """How a function step's job runs: the ``@step`` keyword arguments of the SageMaker SDK."""

    instance_type: PipelineValue
    image_uri: PipelineValue = None
    instance_count: PipelineValue = 1
    volume_size: PipelineValue = 30
    volume_kms_key: PipelineValue = None
    max_runtime_in_seconds: PipelineValue = DEFAULT_MAX_RUNTIME
    max_retry_attempts: PipelineValue = 1
    keep_alive_period_in_seconds: PipelineValue = 0
    role: str | None = None
    environment_variables: Mapping[str, PipelineValue] = field(default_factory=dict)
    dependencies: str | None = None
    pre_execution_commands: tuple[str, ...] | None = None
    pre_execution_script: str | None = None
    tags: tuple[Mapping[str, str], ...] = ()
    security_group_ids: tuple[PipelineValue, ...] | None = None
    subnets: tuple[PipelineValue, ...] | None = None
    encrypt_inter_container_traffic: PipelineValue = False
    use_spot_instances: PipelineValue = False
    max_wait_time_in_seconds: PipelineValue = None


@record
class FunctionStep(Step):
    """One call of a ``@step`` function: a Training job that runs the function.

    Built by calling a decorated function, not directly. Its properties are not readable
    (as in the SDK): use the returned :class:`DelayedReturn` instead.
    """

    function: Callable[..., Any] = field(kw_only=True)
    args: tuple[Any, ...] = field(default=(), kw_only=True)
    kwargs: Mapping[str, Any] = field(default_factory=dict, kw_only=True)
    settings: FunctionSettings = field(kw_only=True)
    STEP_TYPE: ClassVar[str] = "Training"
    # One call, one step: two calls with equal arguments are still two steps.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    @property
    def properties(self) -> NoReturn:  # refused, as in the SDK
        raise PipelineError(
            f"function step '{self.name}' has no properties to read; use the value its "
            "function returns (a DelayedReturn) instead"
        )

    @property
    def arguments(self) -> tuple[Any, ...]:
        """The positional then the keyword argument values, in the order the SDK lists them."""
        return (*self.args, *self.kwargs.values())

    def expressions(self) -> JSON:
        args: list[JSON] = [argument_expr(a) for a in self.arguments if is_pipeline_variable(a)]
        settings = {
            f.name: to_expr(getattr(self.settings, f.name))
            for f in dataclasses.fields(self.settings)
            if f.name not in ("tags", "pre_execution_commands")
        }
        return {"Arguments": args, "Settings": settings}


class DelayedReturn(StepOutput):
    """The value a function step returns, or an item of it (``result[0]``, ``result["k"]``).

    In a condition or a classic step's argument it reads the step's ``results.json`` with
    ``Std:JsonGet``, exactly as the SDK compiles it; passed to another function it arrives as
    the Python object the function returned.
    """

    def __init__(self, step: FunctionStep, reference_path: tuple[tuple[str, Any], ...] = ()):
        self._step = step
        self.reference_path = reference_path

    @property
    def step(self) -> FunctionStep:
        return self._step

    def __getitem__(self, key: int | str) -> DelayedReturn:
        if not isinstance(key, int | str) or isinstance(key, bool):
            raise PipelineError(
                f"the return of function step '{self._step.name}' is indexed with {key!r}: "
                "use an int or a str"
            )
        if isinstance(key, str) and (not key or any(c in key for c in "'\"[]\\")):
            raise PipelineError(
                f"the return of function step '{self._step.name}' is indexed with {key!r}: a "
                "JsonGet path cannot hold an empty key, quotes, brackets or backslashes"
            )
        return DelayedReturn(self._step, (*self.reference_path, ("__getitem__", key)))

    def __iter__(self) -> Iterator[Any]:
        raise PipelineError(
            f"the return of function step '{self._step.name}' cannot be unpacked or iterated "
            "before the pipeline runs; index it instead (result[0], result['key'])"
        )

    @property
    def json_path(self) -> str:
        """The JsonGet path into ``results.json``: ``Result``, ``Result[1]``, ``Result['k']``."""
        path = RESULT_KEY
        for _, key in self.reference_path:
            path += f"[{key}]" if isinstance(key, int) else f"['{key}']"
        return path

    @property
    def output_path(self) -> Properties:
        """``Steps.<step>.OutputDataConfig.S3OutputPath``: where the step writes its results."""
        return Properties(self._step.name, "Training").OutputDataConfig.S3OutputPath

    @property
    def expr(self) -> JSON:
        uri = Join(on="/", values=(self.output_path, RESULTS_FILE))
        return {"Std:JsonGet": {"S3Uri": uri.expr, "Path": self.json_path}}

    def __repr__(self) -> str:
        return f"DelayedReturn({self._step.name}{self.json_path[len(RESULT_KEY) :]})"


class _DelayedSequence(DelayedReturn):
    """The return of a function annotated to return a tuple or a list: int indexes only."""

    def __getitem__(self, key: int | str) -> DelayedReturn:
        if not isinstance(key, int) or isinstance(key, bool):
            raise PipelineError(
                f"the return of function step '{self._step.name}' is a sequence: index it "
                f"with an int, not {key!r}"
            )
        return super().__getitem__(key)


def is_pipeline_variable(value: object) -> bool:
    return isinstance(value, Parameter | ExecutionVariable | Properties | DelayedReturn)


def argument_expr(value: Parameter | ExecutionVariable | Properties | DelayedReturn) -> JSON:
    """The ``Get`` a function argument is resolved from in the job (a DelayedReturn: its
    step's output path)."""
    if isinstance(value, DelayedReturn):
        return value.output_path.expr
    return value.expr


_UNSUPPORTED = {
    "job_conda_env": "conda environments are not supported; list packages in dependencies",
    "spark_config": "Spark function steps are not supported",
    "include_local_workdir": "the function is pickled by value with its module; "
    "put other local modules in a package listed in dependencies",
}


def step(
    _func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    display_name: str | None = None,
    description: str | None = None,
    retry_policies: Sequence[RetryPolicy] | None = None,
    dependencies: str | None = None,
    pre_execution_commands: Sequence[str] | None = None,
    pre_execution_script: str | None = None,
    environment_variables: Mapping[str, PipelineValue] | None = None,
    image_uri: PipelineValue = None,
    instance_count: PipelineValue = 1,
    instance_type: PipelineValue = None,
    job_name_prefix: str | None = None,
    keep_alive_period_in_seconds: PipelineValue = 0,
    max_retry_attempts: PipelineValue = 1,
    max_runtime_in_seconds: PipelineValue = DEFAULT_MAX_RUNTIME,
    role: str | None = None,
    security_group_ids: Sequence[PipelineValue] | None = None,
    subnets: Sequence[PipelineValue] | None = None,
    tags: Mapping[str, str] | Sequence[Mapping[str, str]] | None = None,
    volume_kms_key: PipelineValue = None,
    volume_size: PipelineValue = 30,
    encrypt_inter_container_traffic: PipelineValue = None,
    use_spot_instances: PipelineValue = False,
    max_wait_time_in_seconds: PipelineValue = None,
    cache_config: CacheConfig | None = None,
    **unsupported: Any,
) -> Any:
    """Turn a function into a pipeline step, as ``sagemaker.workflow.function_step.step``.

    Calling the decorated function returns a :class:`DelayedReturn`; the function runs when
    its step runs. ``name`` defaults to the function's name, ``display_name`` to
    ``<module>.<function>``, ``description`` to its docstring (else its file).
    ``cache_config`` is sagepipe's addition (the SDK's ``@step`` has none): the step is a
    Training step, which SageMaker caches like any other.

    Raises:
        PipelineError: for a parameter sagepipe does not support, or a missing instance_type.
    """
    for key in unsupported:
        why = _UNSUPPORTED.get(key, "it is not a parameter of @step")
        raise PipelineError(f"@step({key}=...): {why}")
    if dependencies == "auto_capture":
        raise PipelineError(
            "@step(dependencies='auto_capture'): not supported for pipeline steps (nor by the "
            "SageMaker SDK); give the path of a requirements.txt"
        )
    if instance_type is None:
        raise PipelineError('@step: instance_type is required, e.g. instance_type="ml.m5.large"')
    if instance_count != 1 and not isinstance(instance_count, Expression):
        raise PipelineError(f"@step: instance_count={instance_count!r}; function steps run on 1")
    if pre_execution_commands is not None and pre_execution_script is not None:
        raise PipelineError("@step: give pre_execution_commands or pre_execution_script, not both")
    if max_wait_time_in_seconds is not None and use_spot_instances is False:
        raise PipelineError("@step: max_wait_time_in_seconds needs use_spot_instances=True")
    settings = FunctionSettings(
        instance_type=instance_type,
        image_uri=image_uri,
        instance_count=instance_count,
        volume_size=volume_size,
        volume_kms_key=volume_kms_key,
        max_runtime_in_seconds=max_runtime_in_seconds,
        max_retry_attempts=max_retry_attempts,
        keep_alive_period_in_seconds=keep_alive_period_in_seconds,
        role=role,
        environment_variables=dict(environment_variables or {}),
        dependencies=dependencies,
        pre_execution_commands=None
        if pre_execution_commands is None
        else tuple(pre_execution_commands),
        pre_execution_script=pre_execution_script,
        tags=_tags(tags),
        security_group_ids=None if security_group_ids is None else tuple(security_group_ids),
        subnets=None if subnets is None else tuple(subnets),
        encrypt_inter_container_traffic=False
        if encrypt_inter_container_traffic is None
        else encrypt_inter_container_traffic,
        use_spot_instances=use_spot_instances,
        max_wait_time_in_seconds=max_wait_time_in_seconds,
    )

    def decorate(func: Callable[..., Any]) -> Callable[..., DelayedReturn]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> DelayedReturn:
            step_name = name or func.__name__
            _check_call(step_name, func, args, kwargs)
            doc = description or func.__doc__ or func.__code__.co_filename
            fstep = FunctionStep(
                step_name,
                display_name=display_name or f"{func.__module__}.{func.__name__}",
                description=doc,
                retry_policies=tuple(retry_policies or ()),
                cache_config=cache_config,
                function=func,
                args=tuple(args),
                kwargs=dict(kwargs),
                settings=settings,
            )
            return _delayed_return(fstep, func)

        return wrapper

    return decorate if _func is None else decorate(_func)


def _tags(
    tags: Mapping[str, str] | Sequence[Mapping[str, str]] | None,
) -> tuple[dict[str, str], ...]:
    if tags is None:
        return ()
    if isinstance(tags, Mapping):
        return tuple({"Key": str(k), "Value": str(v)} for k, v in tags.items())
    return tuple(dict(t) for t in tags)


def _check_call(
    name: str, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    try:
        inspect.signature(func).bind(*args, **kwargs)
    except TypeError as exc:
        raise PipelineError(f"function step '{name}': {func.__name__}() {exc}") from None
    where = [*(f"argument {i + 1}" for i in range(len(args))), *(f"argument {k!r}" for k in kwargs)]
    for label, value in zip(where, (*args, *kwargs.values()), strict=True):
        if isinstance(value, Join | JsonGet):
            raise PipelineError(
                f"function step '{name}': {label} is a {type(value).__name__}, which a function "
                "cannot receive (nor in the SageMaker SDK); compute the value inside the function"
            )
        if not is_pipeline_variable(value) and _holds_variable(value):
            raise PipelineError(
                f"function step '{name}': {label} holds a pipeline variable inside "
                f"a {type(value).__name__}; pass each parameter or step result as its own argument"
            )


def _holds_variable(value: object) -> bool:
    if isinstance(value, Expression | StepOutput):
        return True
    if isinstance(value, list | tuple | set | frozenset):
        return any(_holds_variable(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_variable(k) or _holds_variable(v) for k, v in value.items())
    return False


def _delayed_return(fstep: FunctionStep, func: Callable[..., Any]) -> DelayedReturn:
    try:
        hint = typing.get_type_hints(func).get("return")
    except Exception:  # an annotation that cannot be resolved here only loses the int check
        hint = None
    if hint in (tuple, list) or typing.get_origin(hint) in (tuple, list):
        return _DelayedSequence(fstep)
    return DelayedReturn(fstep)


def upstream_function_steps(value: object) -> Iterator[FunctionStep]:
    """The function steps whose returns ``value`` (a step, a condition, an argument) reads."""
    if isinstance(value, DelayedReturn):
        yield value.step
    elif isinstance(value, FunctionStep):
        for arg in value.arguments:
            yield from upstream_function_steps(arg)
    elif isinstance(value, Step):
        for f in dataclasses.fields(value):
            if f.name not in ("if_steps", "else_steps", "depends_on"):
                yield from upstream_function_steps(getattr(value, f.name))
        for dep in value.depends_on:
            if isinstance(dep, DelayedReturn | FunctionStep):
                yield dep.step if isinstance(dep, DelayedReturn) else dep
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from upstream_function_steps(getattr(value, f.name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from upstream_function_steps(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from upstream_function_steps(item)
