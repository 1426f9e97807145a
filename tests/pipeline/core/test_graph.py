"""The DAG is derived from uses/logs, validated, and ordered deterministically."""

from __future__ import annotations

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core import graph
from pipeline.core.errors import GraphError, UsageError

DEFAULT = {
    "prepare_data": ((), ("dataset",)),
    "train": (("dataset",), ("model",)),
    "evaluate": (("model", "dataset"), ("evaluation",)),
    "plot": (("evaluation", "model"), ("plots",)),
}


def test_edges_follow_uses_and_logs() -> None:
    g = graph.from_mapping(DEFAULT)
    assert sorted(g.edges) == [
        ("evaluate", "plot"),
        ("prepare_data", "evaluate"),
        ("prepare_data", "train"),
        ("train", "evaluate"),
        ("train", "plot"),
    ]
    assert g.edges["train", "plot"] == ("model",)
    assert g.to_networkx().edges["train", "plot"]["artifacts"] == ("model",)
    assert graph.producers(g)["model"] == "train"


def test_order_is_topological_and_limited_to_ancestors() -> None:
    g = graph.from_mapping(DEFAULT)
    assert graph.order(g, ["evaluate"]) == ["prepare_data", "train", "evaluate"]
    assert graph.order(g, ["plot"]) == ["prepare_data", "train", "evaluate", "plot"]
    assert graph.order(g, ["prepare_data"]) == ["prepare_data"]
    assert graph.sinks(g) == ["plot"]


def test_order_breaks_ties_by_name() -> None:
    g = graph.from_mapping({"b": ((), ("x",)), "a": ((), ("y",)), "c": (("x", "y"), ())})
    assert graph.order(g, ["c"]) == ["a", "b", "c"]


def test_two_producers_of_one_artifact_are_rejected() -> None:
    with pytest.raises(GraphError, match=r"`model` is logged by both `a` and `b`"):
        graph.from_mapping({"a": ((), ("model",)), "b": ((), ("model",))})


def test_an_input_nobody_produces_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(GraphError, match=r"uses artifact `modle`.*did you mean `model`"):
        graph.from_mapping({"a": ((), ("model",)), "b": (("modle",), ())})


def test_a_cycle_is_rejected_naming_its_stages() -> None:
    with pytest.raises(GraphError, match=r"cycle: (a -> b|b -> a)"):
        graph.from_mapping({"a": (("y",), ("x",)), "b": (("x",), ("y",))})


def test_unknown_stage_names_the_closest() -> None:
    g = graph.from_mapping(DEFAULT)
    assert graph.check_stage(g, "prepare-data") == "prepare_data"
    with pytest.raises(UsageError, match=r"unknown stage `trian`; did you mean `train`"):
        graph.check_stage(g, "trian")


@st.composite
def _dags(draw: st.DrawFn) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Random DAGs: stage i may use what any stage before it (in a shuffled naming) logs."""
    size = draw(st.integers(1, 8))
    names = draw(st.permutations([f"s{i}" for i in range(size)]))
    found = {}
    for i, name in enumerate(names):
        uses = draw(st.sets(st.sampled_from(names[:i]), max_size=3)) if i else set()
        found[name] = (tuple(sorted(f"{u}-out" for u in uses)), (f"{name}-out",))
    return found


@settings(max_examples=60, deadline=None)
@given(_dags(), st.data())
def test_order_is_networkx_order_of_the_subgraph(
    mapping: dict[str, tuple[tuple[str, ...], tuple[str, ...]]], data: st.DataObject
) -> None:
    """`order` reads networkx's order of the whole DAG: it must be networkx's of the subset."""
    dag = graph.from_mapping(mapping)
    targets = data.draw(st.lists(st.sampled_from(sorted(mapping)), min_size=1, max_size=3))
    g = dag.to_networkx()
    keep = set(targets).union(*(nx.ancestors(g, t) for t in targets))
    assert graph.order(dag, targets) == list(nx.lexicographical_topological_sort(g.subgraph(keep)))
    assert graph.order(dag) == list(nx.lexicographical_topological_sort(g))
    assert graph.from_json(dag.to_json()) == dag
    assert graph.sinks(dag) == sorted(n for n in g if g.out_degree(n) == 0)
