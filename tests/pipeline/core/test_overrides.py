"""Overrides as typed: split by stage, keyed, merged with those the lock recorded."""

from __future__ import annotations

import pytest

from pipeline.core import overrides
from pipeline.core.errors import UsageError

NAMES = ["prepare_data", "train", "evaluate", "plot"]


def test_overrides_are_split_by_stage() -> None:
    found = overrides.split_overrides(
        ["train.lr=0.01", "prepare-data.dataset=mnist", "+train.model.extra=1", "train.x=a=b"],
        NAMES,
    )
    assert found == {
        "train": ["lr=0.01", "+model.extra=1", "x=a=b"],
        "prepare_data": ["dataset=mnist"],
    }


def test_an_unknown_stage_or_a_bare_key_is_bad_input() -> None:
    with pytest.raises(UsageError, match=r"unknown stage `trian`; did you mean `train`"):
        overrides.split_overrides(["trian.lr=1"], NAMES)
    with pytest.raises(UsageError, match=r"should look like `STAGE.KEY=VALUE`"):
        overrides.split_overrides(["lr=1"], NAMES)


def test_a_new_value_replaces_the_old_and_other_keys_stay() -> None:
    merged = overrides.merge(("epochs=3", "lr=0.01"), ["lr=0.001"])
    assert merged == ("epochs=3", "lr=0.001")


def test_choosing_another_group_option_drops_the_old_options_keys() -> None:
    merged = overrides.merge(("model=mlp", "model.hidden=64", "lr=0.1"), ["model=cnn"])
    assert merged == ("lr=0.1", "model=cnn")
    assert overrides.merge((), ["model=mlp", "model.hidden=64"]) == ("model=mlp", "model.hidden=64")


CNN = {"_target_": "stages.models.cnn", "_partial_": True, "channels": [32, 64], "dropout": 0.1}


RESNET = {"_target_": "stages.models.torchvision_model", "_partial_": True, "name": "resnet18"}


def test_a_config_is_shown_in_the_keys_a_user_types() -> None:
    config = {"_target_": "stages.train.train", "_convert_": "all", "lr": 0.1, "model": CNN}
    assert overrides.user_config(config) == {
        "lr": 0.1,
        "model": "cnn",
        "model.channels": [32, 64],
        "model.dropout": 0.1,
    }
    # The group option chosen, where an override chose it; else the name of what it builds.
    assert overrides.user_config({"model": RESNET}, ["model=resnet18"])["model"] == "resnet18"
    assert overrides.user_config({"model": RESNET}, ["lr=1"])["model"] == "torchvision_model"


def test_a_changed_option_is_one_change_and_its_keys_follow_from_it() -> None:
    old = overrides.user_config({"lr": 0.1, "model": CNN})
    new = overrides.user_config({"lr": 0.2, "model": RESNET}, ["model=resnet18"])
    assert overrides.config_changes(old, new, "(unset)") == [
        ("lr", 0.1, 0.2),
        ("model", "cnn", "resnet18"),
    ]
    wider = overrides.user_config({"model": {**CNN, "dropout": 0.2}})
    assert overrides.config_changes(old, {**wider, "lr": 0.1}) == [("model.dropout", 0.1, 0.2)]
