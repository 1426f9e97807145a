"""Sweep members: one per combination, paired consistently, gathered by fan-in stages."""

from __future__ import annotations

from pipeline.core import graph
from pipeline.core.sweep import Member, expand, slot_label

G = graph.from_mapping(
    {
        "prepare_data": ((), ("dataset",)),
        "train": (("dataset",), ("model",)),
        "evaluate": (("model", "dataset"), ("evaluation",)),
        "plot": (("evaluation", "model"), ("plots",)),
    }
)
FAN_IN = {"plot": ("evaluation", "model")}


def keys(members: list[Member]) -> list[str]:
    return [m.key for m in members]


def test_without_a_sweep_each_stage_is_one_member_named_like_the_stage() -> None:
    members = expand(G, ["plot"], {}, FAN_IN)
    assert keys(members) == ["prepare_data", "train", "evaluate", "plot"]
    plot = members[-1]
    assert plot.inputs == (("evaluation", "evaluate", "evaluation"), ("model", "train", "model"))
    assert plot.label == "default"


def test_a_sweep_fans_out_and_the_fan_in_stage_gathers_every_member() -> None:
    sweep = {"train": [("lr", ["0.1", "0.01"]), ("model", ["mlp", "cnn"])]}
    members = expand(G, ["plot"], sweep, FAN_IN)
    by_stage = {s: [m for m in members if m.stage == s] for s in ("train", "evaluate", "plot")}
    assert keys(by_stage["train"]) == [
        "train[train.lr=0.1,train.model=mlp]",
        "train[train.lr=0.1,train.model=cnn]",
        "train[train.lr=0.01,train.model=mlp]",
        "train[train.lr=0.01,train.model=cnn]",
    ]
    assert by_stage["train"][1].own == ("lr=0.1", "model=cnn")
    first_eval = by_stage["evaluate"][0]
    assert first_eval.key == "evaluate[train.lr=0.1,train.model=mlp]"
    assert first_eval.own == ()
    assert first_eval.inputs == (
        ("model", "train[train.lr=0.1,train.model=mlp]", "model"),
        ("dataset", "prepare_data", "dataset"),
    )
    (plot,) = by_stage["plot"]
    assert plot.key == "plot[train.lr=0.01|0.1,train.model=cnn|mlp]"
    assert len(plot.inputs) == 8
    slots = [slot for slot, _, _ in plot.inputs]
    assert "evaluation@train.lr=0.1,train.model=cnn" in slots
    assert slot_label("evaluation@train.lr=0.1,train.model=cnn") == "train.lr=0.1,train.model=cnn"
    assert slot_label("evaluation") == "default"


def test_members_pair_only_with_consistent_upstream_members() -> None:
    sweep = {"prepare_data": [("seed", ["0", "1"])], "train": [("lr", ["0.1", "0.01"])]}
    members = expand(G, ["evaluate"], sweep, FAN_IN)
    evaluations = [m for m in members if m.stage == "evaluate"]
    assert len(evaluations) == 4  # never a model of seed 0 on the dataset of seed 1
    for member in evaluations:
        (seed,) = dict(member.assign)["prepare_data.seed"]
        producers = [made_by for _, made_by, _ in member.inputs]
        assert all(f"prepare_data.seed={seed}" in p for p in producers)


def test_a_swept_input_routes_it_to_producer_members_made_for_it() -> None:
    sweep = {"evaluate": [("dataset", ["mnist", "fashion_mnist"])]}
    members = expand(G, ["plot"], sweep, FAN_IN)
    assert keys(members) == [
        "prepare_data",
        "prepare_data[evaluate.dataset=mnist]",
        "prepare_data[evaluate.dataset=fashion_mnist]",
        "train",
        "evaluate[evaluate.dataset=mnist]",
        "evaluate[evaluate.dataset=fashion_mnist]",
        "plot[evaluate.dataset=fashion_mnist|mnist]",
    ]
    routed = members[2]
    assert routed.own == ("dataset=fashion_mnist",)
    assert routed.only_for == "evaluate"
    # One model, trained on the default dataset, evaluated on each routed dataset.
    train = members[3]
    assert train.inputs == (("dataset", "prepare_data", "dataset"),)
    assert members[5].inputs == (
        ("model", "train", "model"),
        ("dataset", "prepare_data[evaluate.dataset=fashion_mnist]", "dataset"),
    )


def test_routing_combines_with_a_hyperparameter_sweep() -> None:
    sweep = {"train": [("lr", ["0.1", "0.01"])], "evaluate": [("dataset", ["a", "b"])]}
    members = expand(G, ["plot"], sweep, FAN_IN)
    evaluations = [m.key for m in members if m.stage == "evaluate"]
    assert evaluations == [
        "evaluate[evaluate.dataset=a,train.lr=0.1]",
        "evaluate[evaluate.dataset=b,train.lr=0.1]",
        "evaluate[evaluate.dataset=a,train.lr=0.01]",
        "evaluate[evaluate.dataset=b,train.lr=0.01]",
    ]
    (plot,) = [m for m in members if m.stage == "plot"]
    assert len([s for s, _, a in plot.inputs if a == "evaluation"]) == 4
    assert len([s for s, _, a in plot.inputs if a == "model"]) == 2


def test_a_key_given_one_value_applies_to_all_members_without_naming_them() -> None:
    sweep = {"train": [("lr", ["0.1", "0.01"]), ("epochs", ["2"])], "evaluate": [("bs", ["8"])]}
    members = expand(G, ["evaluate"], sweep, FAN_IN)
    assert keys(members) == [
        "prepare_data",
        "train[train.lr=0.1]",
        "train[train.lr=0.01]",
        "evaluate[train.lr=0.1]",
        "evaluate[train.lr=0.01]",
    ]
    assert [m.own for m in members[1:]] == [("epochs=2", "lr=0.1"), ("epochs=2", "lr=0.01")] + [
        ("bs=8",)
    ] * 2


def test_a_sweep_of_single_values_stays_apart_from_the_stages_own_blocks() -> None:
    members = expand(G, ["evaluate"], {"train": [("epochs", ["2"])]}, FAN_IN)
    assert keys(members) == ["prepare_data", "train[train.epochs=2]", "evaluate[train.epochs=2]"]
    assert members[1].own == ("epochs=2",)
