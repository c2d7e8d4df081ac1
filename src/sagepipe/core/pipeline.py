"""The pipeline model: named steps and parameters, validated when it is built."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import field
from types import ModuleType

from sagepipe.core.expressions import Parameter, freeze_list
from sagepipe.core.graph import NAME_RE, Graph, build_graph
from sagepipe.core.json_types import JSON
from sagepipe.core.steps import ConditionStep, Step, as_step
from sagepipe.errors import PipelineError
from sagepipe.records import record

DEFAULT_EXPERIMENT_CONFIG: dict[str, JSON] = {
    "ExperimentName": {"Get": "Execution.PipelineName"},
    "TrialName": {"Get": "Execution.PipelineExecutionId"},
}


def functions_module() -> ModuleType | None:
    """``sagepipe.core.functions`` once something imported it (``@step`` does); before, no
    function step can exist, and a pipeline without one never loads that module."""
    return sys.modules.get("sagepipe.core.functions")


@record
class PipelineModel:
    """The pure model of a SageMaker pipeline: top-level ``steps`` (condition branches nested)
    and parameters. The public :class:`sagepipe.Pipeline` adds compile, start and upsert.

    Construction validates names, references, parameters and the graph; a bad pipeline raises
    :class:`~sagepipe.errors.PipelineError` here rather than when it runs.
    """

    name: str
    steps: Sequence[Step] = ()
    parameters: Sequence[Parameter] = ()
    pipeline_experiment_config: dict[str, JSON] | None = field(
        default_factory=lambda: dict(DEFAULT_EXPERIMENT_CONFIG)
    )
    max_parallel_execution_steps: int | None = None
    bucket: str | None = None

    def __post_init__(self) -> None:
        freeze_list(self, "steps")
        freeze_list(self, "parameters")
        object.__setattr__(self, "steps", self._with_upstream_functions(self.steps))
        if not NAME_RE.fullmatch(self.name) or len(self.name) > 256:
            raise PipelineError(
                f"pipeline name {self.name!r} is invalid: use letters, digits, '-' or '_'"
            )
        names = [p.name for p in self.parameters]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise PipelineError(f"pipeline '{self.name}': parameters {dup} are declared twice")
        object.__setattr__(self, "_graph", self._build_graph())

    def _with_upstream_functions(self, steps: Sequence[Step]) -> tuple[Step, ...]:
        """The steps (a function's return standing for its step), then, as the SDK does, every
        function step they read from that is listed nowhere, at the top level."""
        out = [as_step(s) for s in steps]
        functions = functions_module()
        if functions is None:
            return tuple(out)
        listed = {id(s) for s in self._walk(out)}
        queue = list(self._walk(out))
        while queue:
            for upstream in functions.upstream_function_steps(queue.pop(0)):
                if id(upstream) not in listed:
                    listed.add(id(upstream))
                    out.append(upstream)
                    queue.append(upstream)
        return tuple(out)

    @staticmethod
    def _walk(steps: list[Step]) -> Iterator[Step]:
        stack = list(reversed(steps))
        while stack:
            step = stack.pop()
            yield step
            if isinstance(step, ConditionStep):
                stack.extend(reversed((*step.if_steps, *step.else_steps)))

    def _build_graph(self) -> Graph:
        return build_graph(
            (s.node() for s in self.all_steps()),
            (s.name for s in self.steps),
            (p.name for p in self.parameters),
        )

    @property
    def graph(self) -> Graph:
        """The validated step graph."""
        graph: Graph = self.__dict__["_graph"]
        return graph

    def all_steps(self) -> Iterator[Step]:
        """Every step, condition branches included, parents before their branches."""
        return self._walk(list(self.steps))

    def step(self, name: str) -> Step:
        """The step called ``name``."""
        for s in self.all_steps():
            if s.name == name:
                return s
        raise PipelineError(f"pipeline '{self.name}' has no step '{name}'")
