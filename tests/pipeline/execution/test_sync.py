"""Offline runs are uploaded so that W&B numbers versions as the store did, each run once."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.errors import PipelineError
from pipeline.core.lock import InputPin, OutputPin
from pipeline.execution import sync, wandb_file
from pipeline.state.store import Store


def _run(
    store: Store,
    tmp: Path,
    stage: str,
    uses: dict[str, str],
    makes: dict[str, tuple[str, str]],
    mode: str = "offline",
    created: list[str] | None = None,
) -> int:
    """A finished run in the index; ``makes``: logical output -> (version, digest)."""
    inputs = {k: InputPin(k, "v0", d) for k, d in uses.items()}
    run = store.runs.start(stage, f"fp-{stage}", inputs)
    folder = tmp / f"offline-run-{stage}-{run}"
    folder.mkdir(exist_ok=True)
    (folder / f"run-{run}.wandb").write_bytes(wandb_file.encode([]))
    outputs = {k: OutputPin(k, k, v, d, 1, 1) for k, (v, d) in makes.items()}
    tracking = {"id": f"id-{run}", "mode": mode, "dir": str(folder)}
    if created is not None:
        tracking["created"] = created
    store.runs.end(run, outputs, {}, tracking)
    return run


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path)


def _order(store: Store) -> list[str]:
    return [p.wandb_id for p in sync.pending(store)]


def test_producers_come_before_consumers_whatever_the_start_order(
    store: Store, tmp_path: Path
) -> None:
    # evaluate started before a retrained model existed in this index: order follows digests.
    _run(store, tmp_path, "prepare", {}, {"dataset": ("v0", "D")})
    _run(store, tmp_path, "evaluate", {"dataset": "D", "model": "M"}, {"evaluation": ("v0", "E")})
    _run(store, tmp_path, "train", {"dataset": "D"}, {"model": ("v0", "M")})
    _run(store, tmp_path, "online-one", {}, {"x": ("v0", "X")}, mode="online")
    assert [p.stage for p in sync.pending(store)] == ["prepare", "train", "evaluate"]


def test_the_run_that_made_a_version_first_uploads_before_one_that_logged_it_again(
    store: Store, tmp_path: Path
) -> None:
    # Two plot runs: the first made plots v0, a later one v1, a third logged v0's bits again.
    first = _run(store, tmp_path, "plot", {}, {"plots": ("v0", "P0")}, created=["plots"])
    second = _run(store, tmp_path, "plot", {}, {"plots": ("v1", "P1")}, created=["plots"])
    again = _run(store, tmp_path, "plot", {}, {"plots": ("v0", "P0")}, created=[])
    assert _order(store) == [f"id-{first}", f"id-{second}", f"id-{again}"]


def test_versions_are_created_in_version_order_even_when_runs_started_the_other_way(
    store: Store, tmp_path: Path
) -> None:
    # Parallel members: the one that started second committed first, so it made v0.
    late = _run(store, tmp_path, "train", {}, {"model": ("v1", "M1")}, created=["model"])
    early = _run(store, tmp_path, "train", {}, {"model": ("v0", "M0")}, created=["model"])
    assert _order(store) == [f"id-{early}", f"id-{late}"]


def test_a_relog_recorded_before_the_creator_flag_still_follows_the_first_logger(
    store: Store, tmp_path: Path
) -> None:
    first = _run(store, tmp_path, "plot", {}, {"plots": ("v0", "P0")})
    again = _run(store, tmp_path, "plot", {}, {"plots": ("v0", "P0")})
    assert sync.creators(store.runs.tracked())[("plots", "P0")] == first
    assert _order(store) == [f"id-{first}", f"id-{again}"]


def test_each_run_is_uploaded_once(store: Store, tmp_path: Path) -> None:
    _run(store, tmp_path, "prepare", {}, {"dataset": ("v0", "D")})
    _run(store, tmp_path, "train", {"dataset": "D"}, {"model": ("v0", "M")})
    uploaded: list[str] = []
    sync.sync(store, sync.pending(store), lambda: "team", lambda run: uploaded.append(run.stage))
    assert uploaded == ["prepare", "train"]
    assert sync.pending(store) == []
    tracking = store.runs.tracking("fp-train")
    assert tracking is not None
    assert tracking["synced"] is True


def test_runs_recorded_without_an_entity_get_one_before_upload(
    store: Store, tmp_path: Path
) -> None:
    from wandb.proto import wandb_internal_pb2 as pb

    _run(store, tmp_path, "prepare", {}, {"dataset": ("v0", "D")})
    (todo,) = sync.pending(store)
    record = pb.Record()
    record.run.run_id = "abc"
    use = pb.Record()
    use.artifact.name = "dataset"
    path = todo.folder / "run-1.wandb"
    path.write_bytes(wandb_file.encode([record.SerializeToString(), use.SerializeToString()]))
    asked: list[str] = []

    def entity() -> str:
        asked.append("asked")
        return "team"

    sync.sync(store, [todo], entity, lambda run: None)
    assert wandb_file.entities(path) == {"team"}
    assert asked == ["asked"]


def test_a_failed_upload_keeps_the_rest_pending(store: Store, tmp_path: Path) -> None:
    _run(store, tmp_path, "prepare", {}, {"dataset": ("v0", "D")})
    _run(store, tmp_path, "train", {"dataset": "D"}, {"model": ("v0", "M")})

    def upload(run: sync.Pending) -> None:
        if run.stage == "train":
            raise PipelineError("upload refused")

    with pytest.raises(PipelineError, match=r"upload refused"):
        sync.sync(store, sync.pending(store), lambda: "team", upload)
    assert [p.stage for p in sync.pending(store)] == ["train"]


def test_a_missing_run_folder_is_named(store: Store, tmp_path: Path) -> None:
    _run(store, tmp_path, "prepare", {}, {"dataset": ("v0", "D")})
    (todo,) = sync.pending(store)
    for child in todo.folder.iterdir():
        child.unlink()
    todo.folder.rmdir()
    with pytest.raises(PipelineError, match=r"offline run folder `.*offline-run-prepare-1` of"):
        sync.sync(store, [todo], lambda: "team", lambda run: None)


def test_the_wandb_file_writer_round_trips_records_across_blocks() -> None:
    records = [b"x" * 100_000, b"", b"y" * (wandb_file.BLOCK - 14), b"z" * 5]
    assert list(wandb_file.payloads(wandb_file.encode(records))) == records
