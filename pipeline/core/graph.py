"""The stage DAG, derived from what each stage uses and logs, and validated."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # networkx is imported where a DAG is built, not where one is read
    import networkx as nx

from pipeline.core.errors import GraphError, UsageError, did_you_mean


@dataclass(frozen=True)
class Node:
    """What the graph needs to know of a stage: its name and artifact names."""

    name: str
    uses: tuple[str, ...]
    logs: tuple[str, ...]


@dataclass(frozen=True)
class Dag:
    """The stage DAG as networkx built, checked and ordered it, read without networkx.

    :func:`build` makes it with networkx. ``nodes`` maps each stage (in the stages' order)
    to its ``uses`` and ``logs``; ``edges`` maps (producer, consumer) to the artifacts
    between them; ``topo`` is networkx's lexicographical topological order of all stages
    and ``ancestors`` networkx's ancestors of each. The declarations cache keeps it
    (:meth:`to_json`), so that a `status` after an edit reads networkx's answers rather
    than importing networkx again.
    """

    nodes: Mapping[str, Mapping[str, tuple[str, ...]]]
    edges: Mapping[tuple[str, str], tuple[str, ...]]
    topo: tuple[str, ...]
    ancestors: Mapping[str, frozenset[str]]

    def __iter__(self) -> Iterator[str]:
        return iter(self.nodes)

    def __contains__(self, name: object) -> bool:
        return name in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def to_networkx(self) -> nx.DiGraph:
        """The same DAG as a networkx graph (edges carry ``artifacts``)."""
        import networkx as nx

        graph: nx.DiGraph = nx.DiGraph()
        for name, data in self.nodes.items():
            graph.add_node(name, uses=data["uses"], logs=data["logs"])
        for (src, dst), artifacts in self.edges.items():
            graph.add_edge(src, dst, artifacts=artifacts)
        return graph

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (see :func:`from_json`)."""
        return {
            "nodes": [[n, list(d["uses"]), list(d["logs"])] for n, d in self.nodes.items()],
            "edges": [[u, v, list(a)] for (u, v), a in self.edges.items()],
            "topo": list(self.topo),
            "ancestors": {n: sorted(a) for n, a in self.ancestors.items()},
        }


def from_json(data: Mapping[str, Any]) -> Dag:
    """The DAG :meth:`Dag.to_json` wrote (``TypeError``, ``KeyError``, ``ValueError`` if not)."""
    nodes = {
        str(n): {"uses": tuple(map(str, u)), "logs": tuple(map(str, lg))}
        for n, u, lg in data["nodes"]
    }
    edges = {(str(u), str(v)): tuple(map(str, a)) for u, v, a in data["edges"]}
    topo = tuple(map(str, data["topo"]))
    ancestors = {str(n): frozenset(map(str, a)) for n, a in data["ancestors"].items()}
    if set(topo) != set(nodes) or ancestors.keys() != nodes.keys():
        raise ValueError("not a DAG of these stages")
    return Dag(nodes, edges, topo, ancestors)


def build(stages: Iterable[Node]) -> Dag:
    """A DAG with one node per stage and an edge producer -> consumer per artifact.

    Each edge carries the artifact names.  Raises :class:`GraphError` naming the stages
    when an artifact has two producers, an input has none, or the stages form a cycle.
    """
    import networkx as nx

    nodes = list(stages)
    producer: dict[str, str] = {}
    seen: set[str] = set()
    for node in nodes:
        if node.name in seen:
            raise GraphError(f"stage `{node.name}` is listed twice; give each stage its own name")
        seen.add(node.name)
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
    links = [(producer[a], node.name, a) for node in nodes for a in node.uses]
    graph = linked(nodes, links)
    if not nx.is_directed_acyclic_graph(graph):
        cycle = " -> ".join(u for u, _ in nx.find_cycle(graph))
        raise GraphError(f"stages form a cycle: {cycle}; an artifact cannot feed its producer")
    return Dag(
        nodes={n.name: {"uses": n.uses, "logs": n.logs} for n in nodes},
        edges={(u, v): d["artifacts"] for u, v, d in graph.edges(data=True)},
        topo=tuple(nx.lexicographical_topological_sort(graph)),
        ancestors={n.name: frozenset(nx.ancestors(graph, n.name)) for n in nodes},
    )


def linked(nodes: Iterable[Node], links: Iterable[tuple[str, str, str]]) -> nx.DiGraph:
    """A networkx graph of ``nodes`` and one edge per (producer, consumer) pair.

    Each edge carries the names of the artifacts that flow along it, in ``links`` order
    (producer, consumer, artifact): the stage graph and the members' graph alike.
    """
    import networkx as nx

    graph: nx.DiGraph = nx.DiGraph()
    for node in nodes:
        graph.add_node(node.name, uses=node.uses, logs=node.logs)
    for src, dst, artifact in links:
        if graph.has_edge(src, dst):
            graph.edges[src, dst]["artifacts"] += (artifact,)
        else:
            graph.add_edge(src, dst, artifacts=(artifact,))
    return graph


def producers(dag: Dag) -> dict[str, str]:
    """Map each artifact name to the stage that logs it."""
    return {a: stage for stage, data in dag.nodes.items() for a in data["logs"]}


def check_stage(graph: Dag, name: str) -> str:
    """Return ``name`` if it is a stage (``prepare-data`` spelled with a dash too)."""
    candidate = name.replace("-", "_")
    if candidate in graph:
        return candidate
    raise UsageError(f"unknown stage `{name}`{did_you_mean(candidate, graph)}")


def order(dag: Dag, targets: Sequence[str] | None = None) -> list[str]:
    """Targets and their ancestors in a deterministic topological order.

    networkx's lexicographical order of the whole DAG, kept to those stages: the order of
    a set that holds every ancestor of its members is the same in the whole and alone.
    """
    keep: set[str] = set(dag) if targets is None else set()
    for target in targets or ():
        keep |= dag.ancestors[target] | {target}
    return [stage for stage in dag.topo if stage in keep]


def sinks(dag: Dag) -> list[str]:
    """Stages nothing depends on, in name order: the default run target."""
    feeding = {src for src, _ in dag.edges}
    return sorted(n for n in dag if n not in feeding)


def from_mapping(edges: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]) -> Dag:
    """Build from ``{stage: (uses, logs)}``: handy for small graphs in tests and tools."""
    return build(Node(name, tuple(u), tuple(lg)) for name, (u, lg) in edges.items())
