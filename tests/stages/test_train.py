"""Tests for the `train` stage."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch

from stages import data, models
from stages.prepare_data import prepare_data
from stages.train import train


def test_train_writes_the_model_artifact(dataset_dir: Path, model_dir: Path) -> None:
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "history.json",
        "model.json",
        "state_dict.pt",
    ]
    history = json.loads((model_dir / "history.json").read_text())
    assert [row["epoch"] for row in history["epochs"]] == [1, 2]
    assert history["best_epoch"] in (1, 2)
    record = json.loads((model_dir / "model.json").read_text())
    assert record["factory"] == "stages.models.cnn" and record["in_shape"] == [1, 8, 8]
    state = torch.load(model_dir / "state_dict.pt", weights_only=True)
    assert all(t.device.type == "cpu" for t in state.values())


def test_train_is_bit_deterministic(dataset_dir: Path, tmp_path: Path) -> None:
    mlp = functools.partial(models.mlp, hidden=32)
    runs = [train(dataset_dir, tmp_path / run, mlp, epochs=2, device="cpu") for run in "ab"]
    assert runs[0] == runs[1]
    for name in ("state_dict.pt", "model.json", "history.json"):
        a, b = ((tmp_path / run / "model" / name).read_bytes() for run in "ab")
        assert a == b, name


def test_train_returns_metrics_of_the_checkpointed_epoch(dataset_dir: Path, tmp_path: Path) -> None:
    metrics = train(dataset_dir, tmp_path, models.mlp, epochs=3, lr=0.01, device="cpu")
    history = json.loads((tmp_path / "model" / "history.json").read_text())
    best = history["epochs"][history["best_epoch"] - 1]
    assert (
        metrics["val_accuracy"]
        == best["val_accuracy"]
        == max(row["val_accuracy"] for row in history["epochs"])
    )
    assert metrics["epochs"] == 3 and metrics["val_accuracy"] > 0.5
    assert all(type(v) in (int, float) for v in metrics.values())


def test_train_restores_torch_global_settings(dataset_dir: Path, tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    train(dataset_dir, tmp_path, models.mlp, epochs=1, threads=1, device="cpu")
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def test_train_without_validation_keeps_the_last_epoch(tmp_path: Path) -> None:
    prepare_data(data.digits, tmp_path / "p", val_fraction=0.0)
    metrics = train(tmp_path / "p" / "dataset", tmp_path, models.mlp, epochs=2, device="cpu")
    assert metrics["best_epoch"] == 2


def test_train_rejects_zero_epochs(dataset_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="`epochs` must be at least 1; got 0"):
        train(dataset_dir, tmp_path, models.mlp, epochs=0)


def test_deterministic_algorithms_are_on_while_training_without_loading_the_compiler(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    script = (
        "import sys, torch; from stages.train import _deterministic\n"
        "with _deterministic(0, 1, 'cpu'):\n"
        "    assert torch.are_deterministic_algorithms_enabled()\n"
        "assert not torch.are_deterministic_algorithms_enabled()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert found.stdout == "False\n", found.stderr


class _Killed(Exception):
    """Stands in for a kill at the end of an epoch (after its checkpoint is written)."""


def _train_killed_after(epoch: int, dataset: Path, out: Path, folder: Path) -> None:
    from pipeline import spec

    def listener(row: dict[str, float]) -> None:
        if row["epoch"] == epoch:
            raise _Killed

    spec.LISTENERS.append(listener)
    try:
        with spec.checkpointing(folder), pytest.raises(_Killed):
            train(dataset, out, models.cnn, epochs=5, lr=0.01, device="cpu")
    finally:
        spec.LISTENERS.remove(listener)


def test_a_killed_training_resumes_to_the_uninterrupted_bits(
    dataset_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pipeline import spec

    # cnn has dropout: the resumed run must also continue torch's random stream exactly.
    whole = train(dataset_dir, tmp_path / "whole", models.cnn, epochs=5, lr=0.01, device="cpu")
    folder = tmp_path / "checkpoints"
    _train_killed_after(3, dataset_dir, tmp_path / "killed", folder)
    assert (folder / "train.pt").is_file()
    with spec.checkpointing(folder), caplog.at_level("INFO", logger="pipeline.progress"):
        resumed = train(dataset_dir, tmp_path / "resumed", models.cnn, epochs=5, lr=0.01,
                        device="cpu")  # fmt: skip
    assert "train: resumed from epoch 3" in caplog.messages
    first = next(m for m in caplog.messages if m.startswith("train: epoch"))
    assert first.startswith("train: epoch 4  ")
    assert resumed == whole
    for name in ("state_dict.pt", "history.json"):
        a, b = ((tmp_path / run / "model" / name).read_bytes() for run in ("whole", "resumed"))
        assert a == b, name


def test_a_damaged_checkpoint_is_ignored_and_training_starts_over(
    dataset_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pipeline import spec

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "train.pt").write_bytes(b"not a checkpoint")
    whole = train(dataset_dir, tmp_path / "whole", models.mlp, epochs=2, device="cpu")
    with spec.checkpointing(folder), caplog.at_level("INFO", logger="pipeline.progress"):
        again = train(dataset_dir, tmp_path / "again", models.mlp, epochs=2, device="cpu")
    assert again == whole
    assert any("unreadable" in m and "starting over" in m for m in caplog.messages)
