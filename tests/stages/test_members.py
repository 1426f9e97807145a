"""Tests for the member labels of a fan-in (`stages.members`)."""

from __future__ import annotations

from stages.members import describe, parse


def test_a_label_splits_at_commas_between_pairs_only() -> None:
    label = "train.lr=0.01,train.model.channels=[8,16],train.name='a,b',x={p: 1, q: 2}"
    assert parse(label) == (
        ("train.lr", "0.01"),
        ("train.model.channels", "[8,16]"),
        ("train.name", "'a,b'"),
        ("x", "{p: 1, q: 2}"),
    )
    assert parse("default") == ()
    # An unbracketed list stays one value: no `key=` follows its comma.
    assert parse("train.sizes=1,2,train.lr=3") == (("train.sizes", "1,2"), ("train.lr", "3"))
    assert parse("not a label") == (("", "not a label"),)


def test_members_are_told_apart_by_what_differs() -> None:
    labels = [
        "train.epochs=2,train.lr=0.001,train.model.channels=[8,16]",
        "train.epochs=2,train.lr=0.01,train.model.channels=[8,16]",
        "train.epochs=2,train.lr=0.01,train.model.channels=[16,32]",
    ]
    members = describe(labels)
    assert members.common == (("train.epochs", "2"),)
    assert members.varying == ("train.lr", "train.model.channels")
    assert members.short[labels[2]] == "train.lr=0.01, train.model.channels=[16,32]"
    assert members.numeric("train.lr") == dict(zip(labels, [0.001, 0.01, 0.01], strict=True))
    assert members.numeric("train.model.channels") is None
    assert members.log_scale("train.lr")
    assert describe(["default"]).short == {"default": "default"}
    assert describe(["default"]).common == ()
