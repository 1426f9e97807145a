"""Offline runs are uploaded producers first, one at a time, and each only once."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import sync
from pipeline.errors import PipelineError
from pipeline.lock import InputPin, OutputPin
from pipeline.store import Store


def _run(
    store: Store,
    tmp: Path,
    stage: str,
    uses: dict[str, str],
    makes: dict[str, str],
    mode: str = "offline",
) -> int:
    inputs = {k: InputPin(k, "v0", d) for k, d in uses.items()}
    run = store.runs.start(stage, f"fp-{stage}", inputs)
    folder = tmp / f"offline-run-{stage}"
    folder.mkdir(exist_ok=True)
    outputs = {k: OutputPin(k, k, "v0", d, 1, 1) for k, d in makes.items()}
    tracking = {"id": f"id-{stage}", "mode": mode, "dir": str(folder)}
    store.runs.end(run, outputs, {}, tracking)
    return run


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path)


def test_producers_come_before_consumers_whatever_the_start_order(
    store: Store, tmp_path: Path
) -> None:
    # evaluate started before a retrained model existed in this index: order follows digests.
    _run(store, tmp_path, "prepare", {}, {"dataset": "D"})
    _run(store, tmp_path, "evaluate", {"dataset": "D", "model": "M"}, {"evaluation": "E"})
    _run(store, tmp_path, "train", {"dataset": "D"}, {"model": "M"})
    _run(store, tmp_path, "online-one", {}, {"x": "X"}, mode="online")
    order = [p.stage for p in sync.pending(store)]
    assert order == ["prepare", "train", "evaluate"]


def test_each_run_is_uploaded_once(store: Store, tmp_path: Path) -> None:
    _run(store, tmp_path, "prepare", {}, {"dataset": "D"})
    _run(store, tmp_path, "train", {"dataset": "D"}, {"model": "M"})
    uploaded: list[Path] = []
    sync.sync(store, sync.pending(store), uploaded.append)
    assert [p.name for p in uploaded] == ["offline-run-prepare", "offline-run-train"]
    assert sync.pending(store) == []
    assert store.runs.tracking("fp-train") == {
        "id": "id-train",
        "mode": "offline",
        "dir": str(tmp_path / "offline-run-train"),
        "synced": True,
    }


def test_a_failed_upload_keeps_the_rest_pending(store: Store, tmp_path: Path) -> None:
    _run(store, tmp_path, "prepare", {}, {"dataset": "D"})
    _run(store, tmp_path, "train", {"dataset": "D"}, {"model": "M"})

    def upload(folder: Path) -> None:
        if folder.name.endswith("train"):
            raise PipelineError("upload refused")

    with pytest.raises(PipelineError, match=r"upload refused"):
        sync.sync(store, sync.pending(store), upload)
    assert [p.stage for p in sync.pending(store)] == ["train"]


def test_a_missing_run_folder_is_named(store: Store, tmp_path: Path) -> None:
    _run(store, tmp_path, "prepare", {}, {"dataset": "D"})
    (tmp_path / "offline-run-prepare").rmdir()
    with pytest.raises(PipelineError, match=r"offline run folder `.*offline-run-prepare` of stage"):
        sync.sync(store, sync.pending(store), lambda folder: None)
