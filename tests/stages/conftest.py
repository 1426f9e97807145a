"""Shared fixtures: a prepared digits dataset, a briefly trained model, its evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest

from stages import data, models
from stages.evaluate import evaluate
from stages.prepare_data import prepare_data
from stages.train import train

#: Short enough for unit tests; the default config trains much longer.
EPOCHS = 2


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `dataset` artifact folder of the digits data, default split."""
    out = tmp_path_factory.mktemp("prepare_data")
    prepare_data(data.digits, out)
    return out / "dataset"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, dataset_dir: Path) -> Path:
    """The `model` artifact folder of a cnn trained for a few epochs on CPU."""
    out = tmp_path_factory.mktemp("train")
    train(dataset_dir, out, models.cnn, epochs=EPOCHS, device="cpu")
    return out / "model"


@pytest.fixture(scope="session")
def evaluation_dir(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, dataset_dir: Path
) -> Path:
    """The `evaluation` artifact folder of that model on the test split."""
    out = tmp_path_factory.mktemp("evaluate")
    evaluate(model_dir, dataset_dir, out, device="cpu")
    return out / "evaluation"
