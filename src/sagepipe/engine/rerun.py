"""Selective executions and retried executions: which steps run, and what comes from before.

A selective execution (SageMaker's ``SelectiveExecutionConfig``) runs the selected steps only;
every step they need that is not selected is taken, properties and outputs as they were, from a
reference execution of the same pipeline. A retried execution (RetryPipelineExecution) keeps
its succeeded steps and runs the rest again under the same id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sagepipe.core.suggest import did_you_mean_among
from sagepipe.definition import Definition, load
from sagepipe.engine.history import ExecutionRecord, History, StepRecord
from sagepipe.errors import ExecutionError, UsageError
from sagepipe.records import record

if TYPE_CHECKING:
    from sagepipe.engine.engine import Run

ENDED = ("Succeeded", "Failed", "Stopped")  # what a reference may be (the SDK says the same)
RETRYABLE = ("Failed", "Stopped")
MAX_SELECTED = 50  # SelectedSteps holds 1 to 50 items


@record
class Selection:
    """The steps a selective execution runs, and the reference the others come from."""

    selected: frozenset[str]
    reference: ExecutionRecord | None
    taken: tuple[StepRecord, ...]  # steps of the reference whose results are reused
    notes: tuple[str, ...] = ()  # lines to say before the run

    def config(self) -> dict[str, Any]:
        """The SelectiveExecutionConfig this selection stands for."""
        out: dict[str, Any] = {"SelectedSteps": [{"StepName": n} for n in sorted(self.selected)]}
        if self.reference is not None:
            out["SourcePipelineExecutionArn"] = self.reference.arn
        return out


def downstream(definition: Definition, names: Iterable[str]) -> set[str]:
    """Every step after ``names`` in the graph (not ``names`` themselves)."""
    after: dict[str, set[str]] = {n: set() for n in definition.graph.upstream}
    for name, ups in definition.graph.upstream.items():
        for up in ups:
            after[up].add(name)
    found: set[str] = set()
    stack = list(names)
    while stack:
        for nxt in after[stack.pop()]:
            if nxt not in found:
                found.add(nxt)
                stack.append(nxt)
    return found


def upstream(definition: Definition, names: Iterable[str]) -> set[str]:
    """Every step before ``names`` in the graph (not ``names`` themselves)."""
    found: set[str] = set()
    stack = list(names)
    while stack:
        for up in definition.graph.upstream[stack.pop()]:
            if up not in found:
                found.add(up)
                stack.append(up)
    return found


def select_steps(
    definition: Definition, steps: Sequence[str] | None, from_step: str | None
) -> frozenset[str]:
    """The steps ``--steps a,b`` or ``--from STEP`` select, checked as SageMaker checks them.

    Raises:
        UsageError: an unknown step (with did-you-mean), both or neither option, more than 50
            steps, or a step left out between two selected ones.
    """
    if (steps is None) == (from_step is None):
        raise UsageError("give either --steps or --from")
    known = list(definition.graph.order())
    names = [from_step] if from_step is not None else list(steps or ())
    if not names:
        raise UsageError("--steps names no step; give step names separated by commas")
    for name in names:
        if name not in definition.graph.upstream:
            raise UsageError(f"no step '{name}'{did_you_mean_among(name, known, 'steps')}")
    chosen = set(names)
    if from_step is not None:
        chosen |= downstream(definition, [from_step])
    if len(chosen) > MAX_SELECTED:
        raise UsageError(f"{len(chosen)} steps selected; SageMaker runs at most {MAX_SELECTED}")
    for name in known:
        if name in chosen:
            continue
        before = upstream(definition, [name]) & chosen
        after = downstream(definition, [name]) & chosen
        if before and after:
            raise UsageError(
                f"step '{name}' lies between the selected steps '{sorted(before)[0]}' and "
                f"'{sorted(after)[0]}'; select it too (every step on a path between two "
                "selected steps runs)"
            )
    return frozenset(chosen)


def plan_selection(
    history: History,
    definition: Definition,
    pipeline: str,
    selected: frozenset[str],
    reference: str | None,
    store: str | None = None,
) -> Selection:
    """The reference the selection takes its other steps from, and those steps.

    Without ``reference``, the newest ended execution of ``pipeline`` that holds every step
    the selection needs, succeeded. Raises ExecutionError (one line) when there is none, or
    when the given one is another pipeline's, still running, ran on another store than
    ``store`` (its outputs are not in this one), or lacks a needed step.
    """
    needed = {u for s in selected for u in definition.graph.upstream[s]} - selected
    if reference is not None:
        record = history.execution(reference)
        if record.pipeline != pipeline:
            raise ExecutionError(
                f"execution {record.id} is of pipeline '{record.pipeline}', not '{pipeline}'; "
                f"a reference must be an execution of the same pipeline"
            )
        if record.status not in ENDED:
            raise ExecutionError(
                f"execution {record.id} is {record.status}; a reference must have ended"
            )
        problem = _shortfall(history, definition, record, selected, needed, store)
        if problem is not None:
            raise ExecutionError(f"reference {record.id}: {problem}")
        return _selection(history, definition, record, selected)
    if not needed:
        return Selection(selected, None, ())
    first_problem = None
    for record in history.executions(pipeline, limit=500):
        if record.status not in ENDED:
            continue
        problem = _shortfall(history, definition, record, selected, needed, store)
        if problem is None:
            return _selection(history, definition, record, selected)
        first_problem = first_problem or f"the newest ended one, {record.id}: {problem}"
    raise ExecutionError(
        f"no execution of '{pipeline}' can be the reference of this selection "
        f"({first_problem or 'none has ended'}); select the steps it needs too, "
        "or pass --reference"
    )


def _shortfall(
    history: History,
    definition: Definition,
    record: ExecutionRecord,
    selected: frozenset[str],
    needed: set[str],
    store: str | None = None,
) -> str | None:
    """Why ``record`` cannot be the reference, or None when it can."""
    if needed and None not in (store, record.store) and record.store != store:
        return f"it ran on the {record.store} store, not {store} (pass --store {record.store})"
    steps = {s.name: s for s in history.steps(record.id)}
    for name in sorted(needed):
        found = steps.get(name)
        if found is None or found.status != "Succeeded":
            status = "did not run" if found is None else found.status
            return f"step '{name}', which the selected steps need, {status} there"
    for name in sorted(selected):
        parent = definition.graph.branch_of.get(name)
        if parent is None or parent in selected:
            continue
        branch = "True" if name in definition.step(parent).if_steps_names() else "False"
        outcome = steps[parent].properties.get("Outcome")
        if outcome != branch:
            side = "IfSteps" if branch == "True" else "ElseSteps"
            return (
                f"step '{name}' is in the {side} of condition '{parent}', which evaluated to "
                f"{outcome} there; select '{parent}' too (--from {parent})"
            )
    old = load(record.definition)
    for name in sorted(needed):
        return_problem = _drift(definition, old, name)
        if return_problem is not None:
            return return_problem
    return None


def _drift(current: Definition, old: Definition, name: str) -> str | None:
    """What the selected steps read of step ``name`` that the reference's step lacks."""
    if name not in old.graph.nodes or old.step(name).type != current.step(name).type:
        return f"its definition has no {current.step(name).type} step '{name}' (select it too)"
    now, then = current.graph.nodes[name], old.graph.nodes[name]
    for kind, names in now.item_names.items():
        missing = sorted(names - then.item_names.get(kind, frozenset()))
        if missing:
            return (
                f"step '{name}' had no {kind} {', '.join(missing)} then (the definition "
                f"changed); select '{name}' too"
            )
    missing = sorted(now.property_files - then.property_files)
    if missing:
        return f"step '{name}' had no property file {', '.join(missing)} then; select it too"
    return None


def _selection(
    history: History, definition: Definition, record: ExecutionRecord, selected: frozenset[str]
) -> Selection:
    before = upstream(definition, selected) - selected
    taken = tuple(
        s for s in history.steps(record.id) if s.name in before and s.status == "Succeeded"
    )
    old = load(record.definition)
    notes = tuple(
        f"step '{s.name}' changed since execution {record.id}; its outputs there are used as "
        "they are"
        for s in taken
        if s.name in old.graph.nodes
        and dict(old.step(s.name).arguments) != dict(definition.step(s.name).arguments)
    )
    return Selection(selected, record, taken, notes)


def apply_selection(history: History, run: Run, selection: Selection) -> None:
    """Record the selection on the new execution: taken steps succeeded, the rest skipped."""
    history.set_selective(run.info.id, selection.config())
    for step in selection.taken:
        assert selection.reference is not None  # steps are only taken from a reference
        note = f"taken from execution {selection.reference.id} (selective execution): not run"
        history.take_step(run.info.id, step, selection.reference.arn, note + "\n")
        run.status[step.name] = "Succeeded"
        run.scope.steps[step.name] = step.properties
    for name in run.definition.graph.upstream:
        if name not in selection.selected and name not in run.status:
            run.skipped.add(name)


def check_retryable(record: ExecutionRecord) -> None:
    """Only a Failed or Stopped execution can be retried (RetryPipelineExecution's rule)."""
    if record.status == "Succeeded":
        raise ExecutionError(
            f"execution {record.id} Succeeded; there is nothing to retry (only a Failed or "
            "Stopped execution can be retried)"
        )
    if record.status not in RETRYABLE:
        raise ExecutionError(
            f"execution {record.id} is {record.status}; only a Failed or Stopped execution can "
            f"be retried (stop it with 'sagepipe executions stop {record.id}' or let it end)"
        )


def restore_run(run: Run, steps: Sequence[StepRecord], selective: dict[str, Any] | None) -> None:
    """A retried execution's state: its succeeded steps feed the rest, the others run again."""
    definition = run.definition
    for earlier in steps:
        if earlier.name not in definition.graph.upstream:
            continue
        if earlier.status != "Succeeded":
            run.attempts[earlier.name] = earlier.attempts
            continue
        run.status[earlier.name] = "Succeeded"
        run.scope.steps[earlier.name] = earlier.properties
        step = definition.step(earlier.name)
        if step.type == "Condition":
            chosen = earlier.properties.get("Outcome") == "True"
            run.skipped.update(s.name for s in (step.else_steps if chosen else step.if_steps))
    if selective:
        selected = {str(s.get("StepName")) for s in selective.get("SelectedSteps", [])}
        for name in definition.graph.upstream:
            if name not in selected and name not in run.status:
                run.skipped.add(name)


__all__ = [
    "Selection",
    "apply_selection",
    "check_retryable",
    "downstream",
    "plan_selection",
    "restore_run",
    "select_steps",
    "upstream",
]
