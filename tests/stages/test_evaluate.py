"""Tests for the `evaluate` stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stages import data
from stages import evaluate as evaluate_module
from stages.evaluate import evaluate


def test_evaluation_is_consistent(evaluation_dir: Path, dataset_dir: Path) -> None:
    metrics = json.loads((evaluation_dir / "metrics.json").read_text())
    predictions = np.load(evaluation_dir / "predictions.npy")
    _, y = data.read_split(dataset_dir, "test")
    confusion = np.asarray(metrics["confusion_matrix"])
    assert predictions.dtype == np.int64 and predictions.shape == y.shape
    assert confusion.sum() == metrics["n_test"] == len(y)
    assert confusion.sum(1).tolist() == np.bincount(y, minlength=10).tolist()
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["loss"] > 0
    assert metrics["accuracy"] == np.mean(predictions == y)
    assert metrics["classes"] == list(metrics["per_class_accuracy"]) == [str(d) for d in range(10)]
    for i, name in enumerate(metrics["classes"]):
        assert metrics["per_class_accuracy"][name] == confusion[i, i] / confusion[i].sum()


def test_evaluate_returns_summary_and_is_reproducible(
    model_dir: Path, dataset_dir: Path, evaluation_dir: Path, tmp_path: Path
) -> None:
    summary = evaluate(model_dir, dataset_dir, tmp_path, batch_size=50, device="cpu")
    metrics = json.loads((evaluation_dir / "metrics.json").read_text())
    assert summary == {"accuracy": metrics["accuracy"], "loss": summary["loss"]}
    assert abs(summary["loss"] - metrics["loss"]) < 1e-5  # batch size only reorders sums
    again = np.load(tmp_path / "evaluation" / "predictions.npy")
    np.testing.assert_array_equal(again, np.load(evaluation_dir / "predictions.npy"))


@pytest.mark.parametrize(("outside", "threads"), [(2, 1), (1, 2)])
def test_the_math_runs_on_the_configured_threads_not_the_processs(
    model_dir: Path,
    dataset_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    outside: int,
    threads: int,
) -> None:
    # A parallel launcher's worker runs on 1 thread, a plain process on every core, and
    # MKL's matrix product rounds by the count (a 103-row batch did): so it is config.
    seen = []

    def predict(*args: object) -> tuple[float, np.ndarray]:
        seen.append(torch.get_num_threads())
        return real(*args)

    real = evaluate_module._predict
    monkeypatch.setattr(evaluate_module, "_predict", predict)
    saved = torch.get_num_threads()
    torch.set_num_threads(outside)
    try:
        evaluate(model_dir, dataset_dir, tmp_path, threads=threads, device="cpu")
        assert seen == [threads] and torch.get_num_threads() == outside
    finally:
        torch.set_num_threads(saved)


def test_a_model_refuses_a_dataset_of_another_shape(model_dir: Path, tmp_path: Path) -> None:
    import functools

    import pytest

    from stages.prepare_data import prepare_data

    prepare_data(functools.partial(data.mnist1d, num_samples=200), tmp_path / "other")
    with pytest.raises(ValueError, match=r"takes inputs \[1, 8, 8\] with 10 classes, but"):
        evaluate(model_dir, tmp_path / "other" / "dataset", tmp_path / "out", device="cpu")
