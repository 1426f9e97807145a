"""The stage DAG, derived from what each stage uses and logs, and validated."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import networkx as nx

from pipeline.errors import GraphError, UsageError, did_you_mean


@dataclass(frozen=True)
class Node:
    """What the graph needs to know of a stage: its name and artifact names."""

    name: str
    uses: tuple[str, ...]
    logs: tuple[str, ...]


def build(stages: Iterable[Node]) -> nx.DiGraph:
    """A DAG with one node per stage and an edge producer -> consumer per artifact.

    Each edge carries the artifact names in ``artifacts``.  Raises
    :class:`GraphError` naming the stages when an artifact has two producers,
    an input has none, or the stages form a cycle.
    """
    nodes = list(stages)
    graph: nx.DiGraph = nx.DiGraph()
    producer: dict[str, str] = {}
    for node in nodes:
        if graph.has_node(node.name):
            raise GraphError(f"stage `{node.name}` is listed twice; give each stage its own name")
        graph.add_node(node.name, uses=node.uses, logs=node.logs)
        for artifact in node.logs:
            if artifact in producer:
                raise GraphError(
                    f"artifact `{artifact}` is logged by both `{producer[artifact]}` and "
                    f"`{node.name}`; each artifact needs exactly one producing stage"
                )
            producer[artifact] = node.name
    for node in nodes:
        for artifact in node.uses:
            if artifact not in producer:
                raise GraphError(
                    f"stage `{node.name}` uses artifact `{artifact}`, which no stage logs"
                    f"{did_you_mean(artifact, producer)}"
                )
            src = producer[artifact]
            if graph.has_edge(src, node.name):
                graph.edges[src, node.name]["artifacts"] += (artifact,)
            else:
                graph.add_edge(src, node.name, artifacts=(artifact,))
    if not nx.is_directed_acyclic_graph(graph):
        cycle = " -> ".join(u for u, _ in nx.find_cycle(graph))
        raise GraphError(f"stages form a cycle: {cycle}; an artifact cannot feed its producer")
    return graph


def producers(graph: nx.DiGraph) -> dict[str, str]:
    """Map each artifact name to the stage that logs it."""
    return {a: stage for stage, logs in graph.nodes(data="logs") for a in logs}


def check_stage(graph: nx.DiGraph, name: str) -> str:
    """Return ``name`` if it is a stage (``prepare-data`` spelled with a dash too)."""
    candidate = name.replace("-", "_")
    if candidate in graph:
        return candidate
    raise UsageError(f"unknown stage `{name}`{did_you_mean(candidate, graph)}")


def order(graph: nx.DiGraph, targets: Sequence[str] | None = None) -> list[str]:
    """Targets and their ancestors in a deterministic topological order."""
    keep: set[str] = set(graph) if targets is None else set()
    for target in targets or ():
        keep |= nx.ancestors(graph, target) | {target}
    sub = graph.subgraph(keep)
    return list(nx.lexicographical_topological_sort(sub))


def sinks(graph: nx.DiGraph) -> list[str]:
    """Stages nothing depends on, in name order: the default run target."""
    return sorted(n for n in graph if graph.out_degree(n) == 0)


def from_mapping(edges: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]) -> nx.DiGraph:
    """Build from ``{stage: (uses, logs)}``: handy for small graphs in tests and tools."""
    return build(Node(name, tuple(u), tuple(lg)) for name, (u, lg) in edges.items())
