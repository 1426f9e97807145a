"""A layered drawing's order: nodes in topological columns, ordered to keep edges apart."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx


def layers(graph: nx.DiGraph, sweeps: int = 4) -> list[list[str]]:
    """The topological layers, each ordered to keep edges from crossing.

    The barycenter heuristic (Sugiyama et al.): sweeping down then up, each node takes the
    mean position of its neighbours in the layer before; ties keep the sorted order.
    """
    found = [sorted(layer, key=natural) for layer in nx.topological_generations(graph)]
    for sweep in range(2 * sweeps):
        down = sweep % 2 == 0
        indices = range(1, len(found)) if down else range(len(found) - 2, -1, -1)
        for i in indices:
            before = {n: k for k, n in enumerate(found[i - 1 if down else i + 1])}
            near = graph.predecessors if down else graph.successors
            now = {n: k for k, n in enumerate(found[i])}
            found[i] = sorted(found[i], key=lambda n: (_center(near(n), before, now[n]), now[n]))
    return found


def natural(node: object) -> tuple[Any, ...]:
    """A sort key that puts ``run:2`` before ``run:10`` and ``model:v9`` before ``model:v10``."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(node)))


def _center(neighbours: Iterable[str], before: Mapping[str, int], own: int) -> float:
    seen = [before[n] for n in neighbours if n in before]
    return sum(seen) / len(seen) if seen else float(own)


def crossings(graph: nx.DiGraph, layers: list[list[str]]) -> int:
    """How many pairs of edges between adjacent layers cross in this order."""
    where = {n: (i, k) for i, layer in enumerate(layers) for k, n in enumerate(layer)}
    spans = [
        (where[a][1], where[b][1], where[a][0])
        for a, b in graph.edges
        if where[b][0] == where[a][0] + 1
    ]
    return sum(
        1
        for x, (a1, b1, l1) in enumerate(spans)
        for a2, b2, l2 in spans[x + 1 :]
        if l1 == l2 and (a1 - a2) * (b1 - b2) < 0
    )
