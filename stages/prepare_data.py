"""Stage `prepare_data`: load a dataset and write its seeded train/val/test split."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hydra_zen import builds

from pipeline.spec import Output, StageInputError, StageSpec
from stages import app, data
from stages.values import Fraction


def prepare_data(
    dataset: Callable[[], data.Loaded],
    out: Path,
    val_fraction: Fraction = 0.1,
    test_fraction: Fraction = 0.2,
    seed: int = 0,
) -> dict[str, float]:
    """Load ``dataset()``, split it stratified by class, write `dataset` to ``out/dataset``."""
    loaded = dataset()
    splits = data.split_indices(loaded.y, val_fraction, test_fraction, seed)
    meta = data.write_dataset(Path(out) / "dataset", loaded, splits)
    return {
        "n_train": meta["counts"]["train"],
        "n_val": meta["counts"]["val"],
        "n_test": meta["counts"]["test"],
        "num_classes": meta["num_classes"],
    }


def check(config: Mapping[str, Any]) -> None:
    """Refuse, before anything runs, a dataset folder that is not there (ranges: `values`)."""
    dataset = config.get("dataset") or {}
    root = dataset.get("root")
    if root is not None and not dataset.get("download") and not Path(root).is_dir():
        raise StageInputError(
            f"dataset root `{root}` does not exist and download is off; set "
            "`prepare_data.dataset.root=DIR` to the folder holding the files, or "
            "`prepare_data.dataset.download=true`"
        )


def _loader_config(loader: Callable[..., data.Loaded]) -> type:
    return builds(loader, populate_full_signature=True, zen_partial=True)


SPEC = StageSpec(
    name="prepare_data",
    task=prepare_data,
    config=builds(
        prepare_data,
        populate_full_signature=True,
        hydra_defaults=["_self_", {"dataset": "digits"}],
    ),
    logs=(Output("dataset", "dataset", artifact="dataset-{dataset}"),),
    check=check,
    groups={
        "dataset": {
            "digits": _loader_config(data.digits),
            "mnist1d": _loader_config(data.mnist1d),
            "mnist": _loader_config(data.mnist),
            "fashion_mnist": _loader_config(data.fashion_mnist),
            "cifar10": _loader_config(data.cifar10),
        }
    },
)

if __name__ == "__main__":
    app.main(SPEC)
