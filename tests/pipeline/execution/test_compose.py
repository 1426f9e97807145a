"""Overrides: addressed by stage, sticky, and composed by Hydra with one-line errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import stages
from pipeline.core.errors import ConfigError
from pipeline.execution import compose, hydra_store


@pytest.fixture(scope="module")
def specs() -> Iterator[dict[str, object]]:
    with hydra_store.registered(stages.STAGES):
        yield {s.name: s for s in stages.STAGES}


def test_compose_resolves_config_and_group_choices(specs: dict[str, object]) -> None:
    result = compose.compose(specs["train"], ["lr=0.5", "model=mlp"])  # type: ignore[arg-type]
    assert result.config["lr"] == 0.5
    assert result.config["model"]["_target_"].endswith("mlp")
    assert "dataset" not in result.config  # input paths are not config
    assert "out" not in result.config
    assert result.choices["model"] == "mlp"


def test_an_unknown_key_gets_a_suggestion(specs: dict[str, object]) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown config key `train.lrr`; did you mean `train.lr`"
    ):
        compose.compose(specs["train"], ["lrr=0.5"])  # type: ignore[arg-type]


def test_an_unknown_group_option_lists_the_choices(specs: dict[str, object]) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown option `nope` for `train.model`; choose one of: .*cnn"
    ):
        compose.compose(specs["train"], ["model=nope"])  # type: ignore[arg-type]


def test_a_badly_typed_value_is_a_config_error(specs: dict[str, object]) -> None:
    with pytest.raises(
        ConfigError, match=r"`train.lr=fast`: expected a value of type float, got `fast`"
    ):
        compose.compose(specs["train"], ["lr=fast"])  # type: ignore[arg-type]


def test_composing_many_members_equals_composing_each(specs: dict[str, object]) -> None:
    train = specs["train"]
    sets = [
        (),
        ("lr=0.01",),
        ("epochs=3", "lr=1e-3"),
        ("model=mlp", "model.hidden=64"),
        ("lr=0.5", "model=mlp"),
        ("model.channels=[8,16]",),
    ]
    assert compose.compose_all(train, sets) == [compose.compose(train, s) for s in sets]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lr=abc", r"`train.lr=abc`: expected a value of type float"),
        ("lrr=1", r"unknown config key `train.lrr`"),
        ("model=nope", r"unknown option `nope` for `train.model`"),
    ],
)
def test_composing_many_members_words_errors_as_hydra_does(
    specs: dict[str, object], override: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        compose.compose_all(specs["train"], [("lr=0.1",), (override,)])
