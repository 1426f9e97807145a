"""Stage `evaluate`: score the trained model on the test split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra_zen import builds

from pipeline.spec import Output, StageInputError, StageSpec
from stages import app, data, models
from stages.values import Count, Device

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn


def evaluate(
    model: Path,
    dataset: Path,
    out: Path,
    batch_size: Count = 256,
    threads: Count = 1,
    device: Device = "auto",
) -> dict[str, float]:
    """Write test accuracy, loss, per-class accuracy, confusion matrix and predictions."""
    import numpy as np
    import torch

    dataset, folder = Path(dataset), Path(out) / "evaluation"
    dev = torch.device(models.resolve_device(device))
    meta = data.read_meta(dataset)
    _check_fits(Path(model), meta)
    x, y = data.read_split(dataset, "test")
    classes = meta["classes"]
    # On CPU the same arguments give the same bits, and the thread count is one of them.
    with models.portable_kernels(threads):
        loss, predicted = _predict(models.load(Path(model), dev), x, y, batch_size, dev)
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(confusion, (y, predicted), 1)
    support = confusion.sum(1)
    metrics = {
        "accuracy": float(np.trace(confusion) / max(len(y), 1)),
        "classes": classes,
        "confusion_matrix": confusion.tolist(),
        "loss": loss,
        "n_test": len(y),
        # A class absent from the test split has no accuracy: null, not a made-up 0.
        "per_class_accuracy": {
            c: float(confusion[i, i] / support[i]) if support[i] else None
            for i, c in enumerate(classes)
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    data.write_json(folder / "metrics.json", metrics)
    np.save(folder / "predictions.npy", predicted, allow_pickle=False)
    return {"accuracy": metrics["accuracy"], "loss": metrics["loss"]}


def _check_fits(model: Path, meta: dict[str, Any]) -> None:
    """A model evaluates only data of the shape and classes it was built for."""
    record = json.loads((model / models.MODEL_FILE).read_text())
    if list(record["in_shape"]) != list(meta["input_shape"]) or (
        record["num_classes"] != meta["num_classes"]
    ):
        raise StageInputError(
            f"the model takes inputs {record['in_shape']} with {record['num_classes']} classes, "
            f"but dataset `{meta['source']}` has {meta['input_shape']} with "
            f"{meta['num_classes']}; evaluate it on a dataset of the same shape"
        )


def _predict(
    net: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int, device: torch.device
) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and int64 argmax predictions, batch by batch."""
    import numpy as np
    import torch

    loss, predictions = 0.0, [np.zeros(0, dtype=np.int64)]
    with torch.no_grad():
        for start in range(0, len(y), batch_size):
            xb = torch.from_numpy(x[start : start + batch_size]).to(device)
            yb = torch.from_numpy(y[start : start + batch_size]).to(device)
            logits = net(xb)
            loss += float(torch.nn.functional.cross_entropy(logits, yb, reduction="sum"))
            predictions.append(logits.argmax(1).cpu().numpy().astype(np.int64))
    return loss / max(len(y), 1), np.concatenate(predictions)


SPEC = StageSpec(
    name="evaluate",
    task=evaluate,
    config=builds(evaluate, populate_full_signature=True),
    uses=("model", "dataset"),
    logs=(Output("evaluation", "evaluation"),),
)

if __name__ == "__main__":
    app.main(SPEC)
