"""Hydra's config store holds our configs only inside a scope."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf

import stages
from pipeline.execution import hydra_store


def _configs(folder: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """Every config in Hydra's store by its path, as plain data."""
    found: dict[str, Any] = {}
    for key, value in folder.items():
        if isinstance(value, dict):
            found.update(_configs(value, f"{path}{key}/"))
        else:
            found[path + key] = OmegaConf.to_container(OmegaConf.create(value.node))
    return found


def test_what_a_scope_registers_is_gone_after_it_and_what_it_replaced_is_back() -> None:
    from hydra.core.config_store import ConfigStore

    repo = ConfigStore.instance().repo
    import hydra.conf  # noqa: F401  Hydra's own `hydra/config`, which the callback's replaces

    before = _configs(repo)
    scoped = dataclasses.replace(stages.STAGES[1], name="scoped_only")
    with hydra_store.registered([scoped]):
        inside = _configs(repo)
        assert "scoped_only.yaml" in inside
        assert "wandb" in inside["hydra/config.yaml"]["callbacks"]
    assert _configs(repo) == before
