"""Value constraints: declared in the stages' signatures, checked before anything runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import pytest
from pydantic import Field

import stages
from pipeline.core.errors import ConfigError
from pipeline.execution import compose, constraints, hydra_store
from pipeline.spec import StageSpec

if TYPE_CHECKING:
    from collections.abc import Sequence  # exists for type checkers only, here


SPECS = {s.name: s for s in stages.STAGES}


@pytest.fixture(scope="module", autouse=True)
def _registered() -> Iterator[None]:
    with hydra_store.registered(stages.STAGES):
        yield


def _composed(stage: str, *overrides: str) -> dict[str, Any]:
    return compose.compose(SPECS[stage], list(overrides)).config


@pytest.mark.parametrize("stage", sorted(SPECS))
def test_every_stages_defaults_keep_its_declared_ranges(stage: str) -> None:
    constraints.check(SPECS[stage], _composed(stage))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("lr=nan",), "`train.lr=nan`: input should be a finite number"),
        (("lr=inf",), "`train.lr=inf`: input should be a finite number"),
        (("lr=-1",), "`train.lr=-1.0`: input should be greater than 0"),
        (("weight_decay=-0.1",), "`train.weight_decay=-0.1`: input should be greater than or"),
        (("epochs=0",), "`train.epochs=0`: input should be greater than or equal to 1"),
        (("device=tpu",), "`train.device=tpu`: input should be 'auto', 'cpu' or 'cuda'"),
        (("model=mlp", "model.depth=-1"), "`train.model.depth=-1`: input should be greater"),
        (("model=cnn", "model.channels=[8,0]"), "`train.model.channels=[8, 0]`: input should"),
    ],
)
def test_a_value_out_of_its_range_names_key_value_range_and_declaration(
    overrides: Sequence[str], message: str
) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        constraints.check(SPECS["train"], _composed("train", *overrides))


def test_the_error_says_who_declared_the_range() -> None:
    with pytest.raises(ConfigError, match=r"\(declared by `stages.models.mlp`\)$"):
        constraints.check(SPECS["train"], _composed("train", "model=mlp", "model.hidden=0"))


def test_a_key_the_task_does_not_take_is_refused_and_kwargs_take_any() -> None:
    config = {**_composed("train"), "foo": 1}
    with pytest.raises(ConfigError, match=r"^unknown config key `train.foo`"):
        constraints.check(SPECS["train"], config)

    def open_ended(out: str, **extra: Any) -> dict[str, float]:
        return {}

    constraints.check(StageSpec("x", open_ended, None), {"anything": 1})


def _task(out: str, width: Annotated[int, Field(ge=1)] = 1, shape: Sequence[int] = ()) -> Any:
    return {}


def test_an_annotation_only_type_checkers_can_read_leaves_the_others_checked() -> None:
    spec = StageSpec("x", _task, None)
    constraints.check(spec, {"width": 2, "shape": "not checked: `Sequence` is not importable"})
    with pytest.raises(ConfigError, match=r"^`x.width=0`: input should be greater"):
        constraints.check(spec, {"width": 0, "shape": [1]})


def test_one_value_is_checked_against_the_callable_its_parent_builds() -> None:
    base = _composed("train", "model=mlp")
    constraints.check_value(SPECS["train"], base, "model.hidden", 64)
    with pytest.raises(ConfigError, match=r"^`train.model.hidden=0`"):
        constraints.check_value(SPECS["train"], base, "model.hidden", 0)
    constraints.check_value(SPECS["train"], {"plain": {}}, "plain.key", -1)  # nothing declares it


def test_a_refused_value_is_never_cached_so_it_is_refused_every_time() -> None:
    cache: dict[str, Any] = {}
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"`train.lr=nan`"):
            compose.compose_all(SPECS["train"], [["lr=nan"]], cache)
    assert not any("lr=nan" in key for key in cache)
    good = compose.compose_all(SPECS["train"], [["lr=0.5"]], cache)
    assert good[0].config["lr"] == 0.5
    assert any("lr=0.5" in key for key in cache)
