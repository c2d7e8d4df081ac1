"""Steps the local engine cannot run, why, and what depends on them (``run --skip-unsupported``).

Without the flag a definition with such a step does not start. With it, the run says before any
step starts which steps will not run; each of them, and each step downstream of one, ends in the
status ``NotRun`` (sagepipe's own: SageMaker lists no such step) with the reason in its
FailureReason, and the rest runs as usual. Steps of a condition branch that is not taken are
not listed, as on SageMaker.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from sagepipe.core.status import StepStatus
from sagepipe.definition import Definition
from sagepipe.records import record

NOT_RUN = StepStatus.NOT_RUN.value
SKIP_FLAG = "--skip-unsupported"
# What each step type needs that only SageMaker (or AWS) has.
_NEEDS: dict[str, str] = {
    "QualityCheck": "runs SageMaker Model Monitor's analyzer container",
    "ClarifyCheck": "runs SageMaker Clarify's processing container",
    "EMR": "runs on an Amazon EMR cluster",
    "Lambda": "invokes an AWS Lambda function",
    "Callback": "waits for an outside process to answer through Amazon SQS",
    "AutoML": "runs a SageMaker Autopilot job",
    "Tuning": "runs a SageMaker hyperparameter tuning job",
    "EMRServerless": "runs on Amazon EMR Serverless",
    "Notebook": "runs a SageMaker notebook job",
}


@record
class NotRunnable:
    """A step that will not run locally, and why (one line)."""

    name: str
    type: str
    reason: str


def unsupported_reason(step_type: str, supported: Collection[str]) -> str:
    """Why a step of ``step_type`` does not run locally."""
    return f"{_needs(step_type)}; it runs only on SageMaker (locally: {', '.join(supported)})"


def _needs(step_type: str) -> str:
    return f"{step_type} {_NEEDS.get(step_type, 'has no local runner')}"


def unsupported_steps(definition: Definition, supported: Collection[str]) -> list[NotRunnable]:
    """The steps whose type has no local runner, in definition order."""
    return [
        NotRunnable(s.name, s.type, unsupported_reason(s.type, supported))
        for s in definition.all_steps()
        if not s.runnable_locally or s.type not in supported
    ]


def not_runnable(definition: Definition, supported: Collection[str]) -> list[NotRunnable]:
    """The unsupported steps and every step downstream of one, in run order."""
    direct = {s.name: s for s in unsupported_steps(definition, supported)}
    graph = definition.graph
    out: list[NotRunnable] = []
    skipped: set[str] = set()
    for name in graph.order():
        if name in direct:
            out.append(direct[name])
            skipped.add(name)
            continue
        reason = depends_reason(graph.upstream[name], skipped)
        if reason is not None:
            out.append(NotRunnable(name, graph.nodes[name].type, reason))
            skipped.add(name)
    return out


def depends_reason(upstream: Collection[str], not_run: Collection[str]) -> str | None:
    """``depends on 'x', which does not run locally`` when an upstream step was not run."""
    missing = sorted(u for u in upstream if u in not_run)
    if not missing:
        return None
    names = ", ".join(f"'{m}'" for m in missing)
    which = "which does" if len(missing) == 1 else "which do"
    return f"depends on {names}, {which} not run locally"


def refusal(steps: list[NotRunnable]) -> str:
    """The one-line error of a run that has unsupported steps and no flag."""
    names = ", ".join(f"'{s.name}' ({_needs(s.type)})" for s in steps)
    noun = "step" if len(steps) == 1 else "steps"
    return (
        f"{noun} {names} cannot run locally; run the other steps with `sagepipe run "
        f"{SKIP_FLAG}`, which marks these and the steps after them NotRun"
    )


def ready_not_run(
    name: str, upstream: Collection[str], status: Mapping[str, str], unsupported: Mapping[str, str]
) -> str | None:
    """Why a step whose upstream steps all ended must be marked NotRun, or None to run it."""
    if name in unsupported:
        return unsupported[name]
    return depends_reason(upstream, [u for u in upstream if status.get(u) == NOT_RUN])


__all__ = [
    "NOT_RUN",
    "SKIP_FLAG",
    "NotRunnable",
    "depends_reason",
    "not_runnable",
    "ready_not_run",
    "refusal",
    "unsupported_reason",
    "unsupported_steps",
]
