"""The drawing's layers: topological columns, ordered so that edges do not cross."""

from __future__ import annotations

import networkx as nx
import pytest

from pipeline.cli.layering import crossings, layers
from tests.pipeline.cli.graphs import sweep


@pytest.mark.parametrize("members", [6, 40])
def test_the_layers_are_ordered_so_that_no_edges_cross(members: int) -> None:
    g = sweep(members)
    by_name = [sorted(layer, key=str) for layer in nx.topological_generations(g)]
    assert crossings(g, by_name) > 0  # run:10 sorts before run:2: sorted names cross
    assert crossings(g, layers(g)) == 0
