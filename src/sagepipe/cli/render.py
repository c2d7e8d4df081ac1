"""Render graphs and execution tables (text, Mermaid, DOT, SVG)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sagepipe.cli.consoles import escape, new_table
from sagepipe.core.status import StepStatus

if TYPE_CHECKING:
    from rich.table import Table

    from sagepipe.definition import Definition

STATUS_STYLE: dict[str, str] = {
    StepStatus.SUCCEEDED: "green",
    StepStatus.FAILED: "red",
    StepStatus.EXECUTING: "yellow",
    StepStatus.STARTING: "yellow",
    StepStatus.STOPPING: "magenta",
    StepStatus.STOPPED: "magenta",
    StepStatus.NOT_RUN: "dim",
}


def edges(definition: Definition) -> list[tuple[str, str, str]]:
    """(upstream, downstream, label) for every edge; condition branches labelled if/else."""
    out = []
    graph = definition.graph
    for name, ups in graph.upstream.items():
        for up in sorted(ups):
            label = ""
            if graph.branch_of.get(name) == up:
                label = "if" if name in definition.step(up).if_steps_names() else "else"
            out.append((up, name, label))
    return sorted(out)


def graph_text(definition: Definition) -> str:
    """The steps in run order with their types and upstream steps."""
    lines = []
    for name in definition.graph.order():
        step = definition.step(name)
        ups = sorted(definition.graph.upstream[name])
        branch = definition.graph.branch_of.get(name)
        where = (
            f"  [{'if' if branch and name in definition.step(branch).if_steps_names() else 'else'} of {branch}]"
            if branch
            else ""
        )
        after = f"  <- {', '.join(ups)}" if ups else ""
        local = "" if step.runnable_locally else "  (not runnable locally)"
        lines.append(f"{name} ({step.type}){after}{where}{local}")
    return "\n".join(lines)


def graph_mermaid(definition: Definition) -> str:
    """A Mermaid flowchart."""
    lines = ["flowchart TD"]
    for s in definition.all_steps():
        shape = ("{", "}") if s.type == "Condition" else ("[", "]")
        lines.append(f'    {_id(s.name)}{shape[0]}"{s.name}<br/>{s.type}"{shape[1]}')
    for a, b, label in edges(definition):
        arrow = f" -- {label} --> " if label else " --> "
        lines.append(f"    {_id(a)}{arrow}{_id(b)}")
    return "\n".join(lines)


def graph_dot(definition: Definition) -> str:
    """A Graphviz DOT digraph."""
    lines = ["digraph pipeline {", "  rankdir=TB;", "  node [shape=box, style=rounded];"]
    for s in definition.all_steps():
        shape = ", shape=diamond" if s.type == "Condition" else ""
        lines.append(f'  "{s.name}" [label="{s.name}\\n{s.type}"{shape}];')
    for a, b, label in edges(definition):
        attr = f' [label="{label}"]' if label else ""
        lines.append(f'  "{a}" -> "{b}"{attr};')
    lines.append("}")
    return "\n".join(lines)


def graph_svg(definition: Definition) -> str:
    """A self-contained SVG: one row per depth of the graph."""
    import html

    graph = definition.graph
    depth: dict[str, int] = {}
    for name in graph.order():
        depth[name] = 1 + max((depth[u] for u in graph.upstream[name]), default=-1)
    rows: dict[int, list[str]] = {}
    for name, d in depth.items():
        rows.setdefault(d, []).append(name)
    w, h, gx, gy = 180, 44, 30, 50
    width = max(len(r) for r in rows.values()) * (w + gx) + gx
    height = len(rows) * (h + gy) + gy
    pos = {}
    for d, names in rows.items():
        for i, name in enumerate(sorted(names)):
            pos[name] = (gx + i * (w + gx), gy + d * (h + gy))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">'
    ]
    parts.append(
        '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="8" refY="4" orient="auto"><path d="M0,0 L8,4 L0,8 z"/></marker></defs>'
    )
    for a, b, label in edges(definition):
        (x1, y1), (x2, y2) = pos[a], pos[b]
        parts.append(
            f'<line x1="{x1 + w / 2}" y1="{y1 + h}" x2="{x2 + w / 2}" y2="{y2}" stroke="#555" marker-end="url(#a)"/>'
        )
        if label:
            parts.append(
                f'<text x="{(x1 + x2) / 2 + w / 2 + 4}" y="{(y1 + h + y2) / 2}">{label}</text>'
            )
    for name, (x, y) in pos.items():
        kind = definition.step(name).type
        fill = "#fff4d6" if kind == "Condition" else "#e8f0fe"
        parts.append(
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="{fill}" stroke="#335"/>'
        )
        parts.append(
            f'<text x="{x + w / 2}" y="{y + 18}" text-anchor="middle" font-weight="bold">{html.escape(name)}</text>'
        )
        parts.append(f'<text x="{x + w / 2}" y="{y + 34}" text-anchor="middle">{kind}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _id(name: str) -> str:
    return "s_" + "".join(c if c.isalnum() else "_" for c in name)


def steps_table(
    steps: Sequence[Mapping[str, Any]],
    title: str,
    peak_rss_kb: Mapping[str, int] | None = None,
    metrics: Mapping[str, Mapping[str, object]] | None = None,
    cache: Mapping[str, Mapping[str, Any]] | None = None,
) -> Table:
    """ListPipelineExecutionSteps entries as a table (oldest first), with local peak memory,
    each step's final metrics and its cache decision (``cache``: step -> the decision's JSON).
    Every text from a step or the service is escaped."""
    table = new_table(title=escape(title))
    columns = ["step", "status", "elapsed"] + (["peak RSS"] if peak_rss_kb else [])
    columns += ["metrics"] if metrics and any(metrics.values()) else []
    columns += (["cache"] if cache else []) + ["detail"]
    for col in columns:
        table.add_column(col, justify="right" if col == "peak RSS" else "left")
    for s in sorted(
        steps, key=lambda e: (e.get("StartTime") or datetime.min.astimezone(), e["StepName"])
    ):
        start, end = s.get("StartTime"), s.get("EndTime")
        elapsed = f"{(end - start).total_seconds():.2f}s" if start and end else ""
        detail = s.get("FailureReason") or _meta(s)
        if s.get("CacheHitResult") and not cache:
            detail = f"cache hit ({s['CacheHitResult']['SourcePipelineExecutionArn'].rsplit('/', 1)[-1]})"
        if s.get("SelectiveExecutionResult"):
            source = s["SelectiveExecutionResult"]["SourcePipelineExecutionArn"]
            detail = f"from reference {source.rsplit('/', 1)[-1]} (not run)"
        name = s["StepName"]
        style = STATUS_STYLE.get(s["StepStatus"], "")
        status = escape(s["StepStatus"])
        cells = [escape(name), f"[{style}]{status}[/]" if style else status, elapsed]
        if peak_rss_kb:
            kb = peak_rss_kb.get(name, 0)
            cells.append(f"{kb / 1024:.0f} MiB" if kb else "")
        if "metrics" in columns:
            cells.append(escape(format_metrics((metrics or {}).get(name, {}))))
        if "cache" in columns:
            cells.append(cache_cell((cache or {}).get(name)))
        table.add_row(*cells, escape(str(detail)))
    return table


def cache_cell(decision: Mapping[str, Any] | None) -> str:
    """A cache decision as table markup: the result in colour, the reason, any warning."""
    if not decision or not decision.get("Result"):
        return ""
    result = str(decision["Result"])
    style = {"hit": "green", "miss": "yellow"}.get(result, "dim")
    text = f"[{style}]{escape(result)}[/]: {escape(str(decision.get('Reason', '')))}"
    for warning in decision.get("Warnings") or ():
        text += f"\n[red]warning[/]: {escape(str(warning))}"
    return text


def format_metrics(metrics: Mapping[str, object]) -> str:
    """``name=value`` pairs, numbers to 4 significant digits."""
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, int | float) else f"{k}={v}" for k, v in metrics.items()
    )


def _meta(step: Mapping[str, Any]) -> str:
    meta = step.get("Metadata") or {}
    if "Condition" in meta:
        return f"Outcome {meta['Condition']['Outcome']}"
    if "RegisterModel" in meta:
        return str(meta["RegisterModel"]["Arn"])
    return ""


def to_json(value: object) -> str:
    """JSON with datetimes as ISO strings."""
    return json.dumps(
        value, indent=2, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)
    )
