"""The notebook API against a workspace where the real pipeline ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import api
from pipeline.core.errors import StoreError, UsageError


def test_artifact_paths_by_version_or_alias(workspace: Path) -> None:
    model = api.artifact("model:v0", workspace)
    assert sorted(p.name for p in model.iterdir()) == [
        "history.json",
        "model.json",
        "state_dict.pt",
    ]
    assert api.artifact("model", workspace) == model
    assert api.artifact("evaluation:latest", workspace) / "metrics.json"
    import torch

    state = torch.load(model / "state_dict.pt", weights_only=True)
    assert state


def test_lock_entries(workspace: Path) -> None:
    train = api.lock_entry("train", workspace)
    assert train.config["epochs"] == 2
    assert train.outputs["model"].version == "v0"
    with pytest.raises(UsageError, match=r"the lock pins no stage `trian`; did you mean `train`"):
        api.lock_entry("trian", workspace)


def test_lineage_graph(workspace: Path) -> None:
    graph = api.lineage("plots", workspace)
    assert graph.graph["focus"] == "artifact:plots:v0"
    runs = {d["stage"] for _, d in graph.nodes(data=True) if d["kind"] == "run"}
    assert runs == {"prepare_data", "train", "evaluate", "plot"}
    (maker,) = graph.predecessors("artifact:plots:v0")
    assert graph.nodes[maker]["stage"] == "plot"
    assert graph.edges["artifact:model:v0", maker]["kind"] == "used"
    assert len(graph.nodes["artifact:plots:v0"]["images"]) == 3


def test_errors_name_the_fix(workspace: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"`model` has no version `v7`; it has v0 and `latest`"):
        api.artifact("model:v7", workspace)
    with pytest.raises(StoreError, match=r"has no `.pipeline` store: nothing ran there yet"):
        api.lineage("model", tmp_path)
