"""Stage `plot`: learning curves, confusion matrix and per-class accuracy as PNGs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra_zen import builds

from pipeline.spec import Output, StageSpec
from stages import app

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot(evaluation: Path, model: Path, out: Path, dpi: int = 100) -> dict[str, float]:
    """Draw three figures into ``out/plots``; the PNG bytes depend only on the inputs."""
    metrics = json.loads((Path(evaluation) / "metrics.json").read_text())
    history = json.loads((Path(model) / "history.json").read_text())
    folder = Path(out) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    figures = {
        "learning_curves.png": _learning_curves(history),
        "confusion_matrix.png": _confusion(metrics),
        "per_class_accuracy.png": _per_class(metrics),
    }
    for name, figure in figures.items():
        # No "Software" tag (it carries the matplotlib version): bytes stay stable.
        figure.savefig(folder / name, dpi=dpi, format="png", metadata={"Software": None})
    return {"figures": len(figures)}


def _figure(**kwargs: Any) -> Figure:
    # A bare Figure renders with Agg on savefig without touching pyplot's global
    # backend or figure registry, so nothing leaks between calls.
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def _learning_curves(history: dict[str, Any]) -> Figure:
    rows = history["epochs"]
    epochs = [r["epoch"] for r in rows]
    figure = _figure(figsize=(9, 3.5))
    loss_ax, acc_ax = figure.subplots(1, 2)
    loss_ax.plot(epochs, [r["train_loss"] for r in rows], label="train")
    loss_ax.plot(epochs, [r["val_loss"] for r in rows], label="validation")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    loss_ax.legend()
    acc_ax.plot(epochs, [r["val_accuracy"] for r in rows], color="tab:green")
    acc_ax.axvline(history["best_epoch"], color="grey", linestyle="--", label="checkpoint")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="Validation accuracy")
    acc_ax.legend()
    return figure


def _confusion(metrics: dict[str, Any]) -> Figure:
    import numpy as np

    matrix = np.asarray(metrics["confusion_matrix"])
    classes = metrics["classes"]
    figure = _figure(figsize=(6, 5))
    ax = figure.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=ax)
    ticks = range(len(classes))
    ax.set_xticks(ticks, classes, rotation=90 if len(classes) > 10 else 0)
    ax.set_yticks(ticks, classes)
    ax.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix (n={matrix.sum()})")
    if len(classes) <= 20:  # counts stay legible only on small matrices
        for (i, j), count in np.ndenumerate(matrix):
            dark = count > matrix.max() / 2
            ax.text(j, i, int(count), ha="center", va="center", color="white" if dark else "black")
    return figure


def _per_class(metrics: dict[str, Any]) -> Figure:
    classes = metrics["classes"]
    values = [metrics["per_class_accuracy"][c] or 0.0 for c in classes]
    figure = _figure(figsize=(max(6, 0.5 * len(classes)), 3.5))
    ax = figure.subplots()
    ax.bar(range(len(classes)), values, color="tab:blue")
    ax.axhline(metrics["accuracy"], color="grey", linestyle="--", label="overall")
    ax.set_xticks(range(len(classes)), classes, rotation=90 if len(classes) > 10 else 0)
    ax.set(ylim=(0, 1.05), xlabel="class", ylabel="test accuracy", title="Per-class accuracy")
    ax.legend(loc="lower right")
    return figure


SPEC = StageSpec(
    name="plot",
    task=plot,
    config=builds(plot, populate_full_signature=True),
    uses=("evaluation", "model"),
    logs=(Output("plots", "plots", media=True),),
)

if __name__ == "__main__":
    app.main(SPEC)
