"""Hydra's config store holds our configs only inside a scope."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

import stages
from pipeline.execution import hydra_store, project


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


def test_what_a_failing_registration_put_in_is_taken_out_again() -> None:
    from hydra.core.config_store import ConfigStore

    repo = ConfigStore.instance().repo
    before = _configs(repo)
    scoped = dataclasses.replace(stages.STAGES[1], name="half_registered")

    def half() -> None:
        hydra_store.register_stages([scoped])
        raise RuntimeError("the second one is refused")

    with pytest.raises(RuntimeError, match=r"refused"), hydra_store.scope(half):
        pass
    assert _configs(repo) == before


def test_a_project_that_fails_to_open_leaves_hydras_store_as_it_was(tmp_path: Path) -> None:
    from hydra.core.config_store import ConfigStore

    repo = ConfigStore.instance().repo
    before = _configs(repo)
    (tmp_path / ".pipeline").mkdir()
    (tmp_path / ".pipeline" / "index.sqlite").write_bytes(b"not a database, " * 64)
    # The error is held, with its traceback, as a notebook holds the last one: nothing the
    # failed opening put in Hydra's store may be left there, even then.
    with pytest.raises(sqlite3.DatabaseError, match=r"not a database") as failed:
        project.load(tmp_path, stages.STAGES)
    assert failed.traceback
    after = _configs(repo)
    assert {k: after[k] for k in before} == before
    # What is new is Hydra's own: its plugins' configs, registered once it first composed.
    assert all(k.startswith("hydra/") for k in set(after) - set(before))
