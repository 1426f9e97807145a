"""The stage DAG as text: ascii for terminals, mermaid for GitHub, dot for Graphviz."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command line lists FORMATS without paying for networkx
    import networkx as nx

FORMATS = ("ascii", "mermaid", "dot")


def render(graph: nx.DiGraph, notes: Mapping[str, str], fmt: str = "ascii") -> str:
    """The DAG with each stage annotated by ``notes`` (its state and output versions)."""
    import networkx as nx

    stages = list(nx.lexicographical_topological_sort(graph))
    edges = sorted((u, v, ", ".join(d["artifacts"])) for u, v, d in graph.edges(data=True))
    if fmt == "mermaid":
        # Sweep members (`train[train.lr=0.1]`) are no mermaid ids: number the nodes.
        ids = {s: s if s.isidentifier() else f"n{i}" for i, s in enumerate(stages)}
        lines = ["flowchart LR"]
        lines += [f'  {ids[s]}["{_mermaid(s)}<br/>{_mermaid(notes.get(s, ""))}"]' for s in stages]
        lines += [f"  {ids[u]} -->|{label}| {ids[v]}" for u, v, label in edges]
    elif fmt == "dot":
        lines = ["digraph pipeline {", "  rankdir=LR;", "  node [shape=box];"]
        lines += [f'  "{s}" [label="{s}\\n{_dot(notes.get(s, ""))}"];' for s in stages]
        lines += [f'  "{u}" -> "{v}" [label="{label}"];' for u, v, label in edges]
        lines.append("}")
    else:
        width = max(map(len, stages), default=0)
        lines = []
        for stage in stages:
            feeds = [f"{u} ({label})" for u, v, label in edges if v == stage]
            source = f"  <- {', '.join(feeds)}" if feeds else ""
            lines.append(f"{stage:{width}}  {notes.get(stage, '')}{source}")
    return "\n".join(lines)


def _mermaid(text: str) -> str:
    return text.replace('"', "#quot;").replace("|", "#124;")


def _dot(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
