"""Step type -> the function that runs a step of that type locally.

A runner's module (and what it imports: staging, jobs, the images layer) loads when a step of
its type first runs: a run whose steps all hit the cache, or that has no Transform or Training
step, does without them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sagepipe.engine.context import StepContext, StepOutcome

Runner = Callable[["StepContext"], "StepOutcome"]

# step type -> (module, function); the order is the one messages list them in
_SOURCES = {
    "Processing": ("sagepipe.engine.processing", "run_processing"),
    "Training": ("sagepipe.engine.functions", "run_training_step"),  # @step functions too
    "Condition": ("sagepipe.engine.control", "run_condition"),
    "Fail": ("sagepipe.engine.control", "run_fail"),
    "RegisterModel": ("sagepipe.engine.control", "run_register_model"),
    "Model": ("sagepipe.engine.control", "run_model"),
    "CreateModel": ("sagepipe.engine.control", "run_model"),
    "Transform": ("sagepipe.engine.transform", "run_transform"),
}


class Runners(Mapping[str, Runner]):
    """A read-only mapping of step types to runners, each imported on first lookup."""

    def __init__(self, sources: Mapping[str, tuple[str, str]]) -> None:
        self._sources = dict(sources)
        self._loaded: dict[str, Runner] = {}

    def __getitem__(self, step_type: str) -> Runner:
        runner = self._loaded.get(step_type)
        if runner is None:
            module, name = self._sources[step_type]
            runner = getattr(importlib.import_module(module), name)
            self._loaded[step_type] = runner
        return runner

    def __contains__(self, step_type: object) -> bool:
        return step_type in self._sources

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)

    def __repr__(self) -> str:
        return f"Runners({', '.join(self._sources)})"


RUNNERS = Runners(_SOURCES)
