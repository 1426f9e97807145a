"""Stage `plot`: learning curves, confusion matrix and per-class accuracy as PNGs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra_zen import builds

from pipeline.spec import Output, StageSpec
from stages import app
from stages.values import Count

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot(
    evaluation: Mapping[str, Path], model: Mapping[str, Path], out: Path, dpi: Count = 100
) -> dict[str, float]:
    """Draw the figures into ``out/plots``; the PNG bytes depend only on the inputs.

    Inputs fan in: ``evaluation`` and ``model`` map each member of a sweep (its swept
    values, or ``default`` for a single run) to its folder.  The best member by test
    accuracy gets the confusion matrix and per-class figures; with several members a
    comparison figure and table (``comparison.json``) rank them all, best marked.
    """
    evaluations = {k: _read(p, "metrics.json") for k, p in sorted(evaluation.items())}
    histories = {k: _read(p, "history.json") for k, p in sorted(model.items())}
    best = max(evaluations, key=lambda k: (evaluations[k]["accuracy"], k))
    folder = Path(out) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    figures = {
        "learning_curves.png": _learning_curves(histories),
        "confusion_matrix.png": _confusion(evaluations[best]),
        "per_class_accuracy.png": _per_class(evaluations[best]),
    }
    if len(evaluations) > 1:
        figures["comparison.png"] = _comparison(evaluations, best)
        table = [
            {"member": k, "accuracy": m["accuracy"], "loss": m["loss"], "best": k == best}
            for k, m in evaluations.items()
        ]
        text = json.dumps(table, indent=2, sort_keys=True) + "\n"
        (folder / "comparison.json").write_text(text, encoding="utf-8")
    for name, figure in figures.items():
        # No "Software" tag (it carries the matplotlib version): bytes stay stable.
        figure.savefig(folder / name, dpi=dpi, format="png", metadata={"Software": None})
    return {
        "figures": len(figures),
        "members": len(evaluations),
        "best_accuracy": evaluations[best]["accuracy"],
    }


def _read(folder: str | Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(folder) / name).read_text())
    return data


def _figure(**kwargs: Any) -> Figure:
    # A bare Figure renders with Agg on savefig without touching pyplot's global
    # backend or figure registry, so nothing leaks between calls.
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def _learning_curves(histories: Mapping[str, dict[str, Any]]) -> Figure:
    figure = _figure(figsize=(9, 3.5))
    loss_ax, acc_ax = figure.subplots(1, 2)
    for label, history in histories.items():
        rows = history["epochs"]
        epochs = [r["epoch"] for r in rows]
        name = "" if len(histories) == 1 else f"{label}: "
        line = loss_ax.plot(epochs, [r["train_loss"] for r in rows], label=f"{name}train")[0]
        loss_ax.plot(
            epochs,
            [r["val_loss"] for r in rows],
            linestyle=":",
            color=line.get_color(),
            label=f"{name}validation",
        )
        acc_ax.plot(
            epochs,
            [r["val_accuracy"] for r in rows],
            color=line.get_color(),
            label=label if len(histories) > 1 else "validation",
        )
        acc_ax.axvline(history["best_epoch"], color=line.get_color(), linestyle="--", alpha=0.5)
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    loss_ax.legend(fontsize="small")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="Validation accuracy (dashed: checkpoint)")
    acc_ax.legend(fontsize="small")
    return figure


def _comparison(evaluations: Mapping[str, dict[str, Any]], best: str) -> Figure:
    labels = list(evaluations)
    values = [evaluations[k]["accuracy"] for k in labels]
    figure = _figure(figsize=(max(6, 1.2 * len(labels)), 4))
    ax = figure.subplots()
    colors = ["tab:orange" if k == best else "tab:blue" for k in labels]
    ax.bar(range(len(labels)), values, color=colors)
    for i, value in enumerate(values):
        ax.text(
            i,
            value,
            f"{value:.3f}" + (" (best)" if labels[i] == best else ""),
            ha="center",
            va="bottom",
            fontsize="small",
        )
    # Values every member shares say nothing about the difference: leave them out.
    parts = [label.split(",") for label in labels]
    shared = set.intersection(*map(set, parts))
    short = [
        ",".join(p for p in part if p not in shared) or label
        for part, label in zip(parts, labels, strict=True)
    ]
    ax.set_xticks(range(len(labels)), short, rotation=30, ha="right", fontsize="small")
    ax.set(ylim=(0, 1.1), ylabel="test accuracy", title="Members compared (best in orange)")
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
    fan_in=("evaluation", "model"),
    logs=(Output("plots", "plots", media=True),),
)

if __name__ == "__main__":
    app.main(SPEC)
