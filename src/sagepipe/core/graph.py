"""The pipeline graph: references found in step JSON, validation, and execution order.

Both authored pipelines (core.pipeline) and loaded definitions (definition.model) reduce each
step to a :class:`Node`; one validator checks them so the two paths refuse the same mistakes
with the same messages.
"""

from __future__ import annotations

import graphlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import field

from sagepipe.core.expressions import ExecutionVariables
from sagepipe.core.json_types import JSON
from sagepipe.core.properties import PropertyPath, list_key
from sagepipe.core.references import parse_get
from sagepipe.core.suggest import did_you_mean, did_you_mean_among
from sagepipe.errors import PipelineError
from sagepipe.records import record

NAME_RE = re.compile(r"^[A-Za-z0-9\-_]{1,64}$")


@record
class Reference:
    """One ``Get`` found in a step: what it reads and where in the step it sits."""

    target: str
    where: str
    path: str = ""
    property_file: str | None = None


@record
class Refs:
    """Everything a piece of step JSON reads."""

    steps: tuple[Reference, ...] = ()
    parameters: tuple[tuple[str, str], ...] = ()
    execution: tuple[tuple[str, str], ...] = ()


def scan(value: JSON, where: str = "") -> Refs:
    """Find every ``Get`` of a step, parameter or execution variable inside ``value``."""
    steps: list[Reference] = []
    params: list[tuple[str, str]] = []
    execution: list[tuple[str, str]] = []
    for get, at in _gets(value, where):
        if not isinstance(get, str):
            raise PipelineError(f"{at}: 'Get' must be a string, not {get!r}")
        try:
            ref = parse_get(get)
        except PipelineError as exc:
            raise PipelineError(f"{at}: {exc}") from None
        if ref.kind == "Parameters":
            params.append((ref.name, at))
        elif ref.kind == "Execution":
            execution.append((ref.name, at))
        else:
            steps.append(Reference(ref.name, at, ref.path, ref.property_file))
    return Refs(tuple(steps), tuple(params), tuple(execution))


def _gets(value: JSON, where: str) -> Iterator[tuple[JSON, str]]:
    if isinstance(value, dict):
        if set(value) == {"Get"}:
            yield value["Get"], where
            return
        for key, inner in value.items():
            yield from _gets(inner, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _gets(inner, f"{where}[{i}]")


@record
class Node:
    """A step reduced to what the graph needs."""

    name: str
    type: str
    refs: Refs
    depends_on: tuple[str, ...] = ()
    if_steps: tuple[str, ...] = ()
    else_steps: tuple[str, ...] = ()
    item_names: Mapping[str, frozenset[str]] = field(default_factory=dict)
    property_files: frozenset[str] = frozenset()


@record
class Graph:
    """A validated pipeline graph."""

    nodes: Mapping[str, Node]
    top_level: tuple[str, ...]
    upstream: Mapping[str, frozenset[str]]
    branch_of: Mapping[str, str]

    def order(self) -> list[str]:
        """Step names in an order where every step follows its upstream steps."""
        return list(graphlib.TopologicalSorter(self.upstream).static_order())


def build_graph(
    nodes: Iterable[Node], top_level: Iterable[str], parameters: Iterable[str]
) -> Graph:
    """Validate the nodes and return the graph; raises PipelineError naming the problem."""
    top = tuple(top_level)
    nodes = list(nodes)
    in_branch = {c: n.name for n in nodes for c in (*n.if_steps, *n.else_steps)}
    by_name: dict[str, Node] = {}
    for node in nodes:
        if node.name in by_name and node.name in top and node.name in in_branch:
            raise PipelineError(
                f"step '{node.name}' is in a branch of condition '{in_branch[node.name]}' and "
                "also at the top level; list it in one place only"
            )
        if not NAME_RE.fullmatch(node.name):
            raise PipelineError(
                f"step name {node.name!r} is invalid: use 1-64 letters, digits, '-' or '_'"
            )
        if node.name in by_name:
            raise PipelineError(f"step name '{node.name}' is used twice; step names must be unique")
        by_name[node.name] = node
    branch_of = _branches(by_name, top)
    declared = set(parameters)
    upstream: dict[str, frozenset[str]] = {}
    for node in by_name.values():
        ups = set(_check_refs(node, by_name, declared))
        for dep in node.depends_on:
            if dep not in by_name:
                raise PipelineError(
                    f"step '{node.name}' DependsOn '{dep}'{did_you_mean(dep, by_name)}"
                )
            ups.add(dep)
        if node.name in branch_of:
            ups.add(branch_of[node.name])
        if node.name in ups:
            raise PipelineError(f"step '{node.name}' depends on itself")
        upstream[node.name] = frozenset(ups)
    try:
        graphlib.TopologicalSorter(upstream).prepare()
    except graphlib.CycleError as exc:
        cycle = " -> ".join(reversed(exc.args[1]))
        raise PipelineError(
            f"the steps form a cycle: {cycle}; remove one of these dependencies"
        ) from None
    return Graph(by_name, top, upstream, branch_of)


def _branches(by_name: Mapping[str, Node], top: tuple[str, ...]) -> dict[str, str]:
    branch_of: dict[str, str] = {}
    for node in by_name.values():
        for child in (*node.if_steps, *node.else_steps):
            if child not in by_name:
                raise PipelineError(f"condition step '{node.name}' lists unknown step '{child}'")
            if child in top:
                raise PipelineError(
                    f"step '{child}' is in a branch of condition '{node.name}' and also at the "
                    "top level; list it in one place only"
                )
            if child in branch_of:
                raise PipelineError(
                    f"step '{child}' is in the branches of both '{branch_of[child]}' and "
                    f"'{node.name}'"
                )
            branch_of[child] = node.name
    for name in by_name:
        if name not in top and name not in branch_of:
            raise PipelineError(f"step '{name}' is neither at the top level nor in a branch")
    return branch_of


def _check_refs(node: Node, by_name: Mapping[str, Node], declared: set[str]) -> Iterator[str]:
    for pname, at in node.refs.parameters:
        if pname not in declared:
            raise PipelineError(
                f"step '{node.name}' {at} reads parameter '{pname}' which is not declared"
                f"{did_you_mean(pname, declared)}; add it to the pipeline's parameters"
            )
    for vname, at in node.refs.execution:
        if vname not in ExecutionVariables.NAMES:
            raise PipelineError(
                f"step '{node.name}' {at} reads unknown execution variable '{vname}'"
                f"{did_you_mean(vname, ExecutionVariables.NAMES)}"
            )
    for ref in node.refs.steps:
        yield _check_ref(node, ref, by_name)


def _check_ref(node: Node, ref: Reference, by_name: Mapping[str, Node]) -> str:
    prefix = f"step '{node.name}' {ref.where} reads Steps.{ref.target}"
    target = by_name.get(ref.target)
    if target is None:
        raise PipelineError(f"{prefix}: no such step{did_you_mean(ref.target, by_name)}")
    if ref.property_file is not None:
        if ref.property_file not in target.property_files:
            known = ", ".join(sorted(target.property_files)) or "none"
            raise PipelineError(
                f"{prefix}.PropertyFiles.{ref.property_file}: no such property file "
                f"(declared: {known})"
            )
        return target.name
    try:
        path = PropertyPath.parse(ref.path)
        path.check(target.type)
    except (ValueError, PipelineError) as exc:
        raise PipelineError(f"{prefix}{ref.path}: {exc}") from None
    _check_item_names(prefix + ref.path, target, path)
    return target.name


def _check_item_names(prefix: str, target: Node, path: PropertyPath) -> None:
    segs = path.segments
    for i, seg in enumerate(segs):
        if not isinstance(seg, tuple):
            continue
        list_path = ".".join(s for s in segs[:i] if isinstance(s, str))
        names = target.item_names.get(list_path)
        if names is None or list_key(target.type, segs[:i]) is None:
            continue
        if seg[0] not in names:
            kind = list_path.rsplit(".", 1)[-1]
            raise PipelineError(
                f"{prefix}: '{target.name}' has no {kind} item '{seg[0]}'"
                f"{did_you_mean_among(seg[0], sorted(names), kind)}"
            )
