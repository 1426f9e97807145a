"""Stage `plot`: learning curves, confusion matrix, per-class accuracy and a sweep's comparison."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra_zen import builds

from pipeline.spec import Output, StageSpec
from stages import app
from stages.figures import best_member, draw
from stages.values import Count


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
    best = best_member(evaluations)
    folder = Path(out) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    figures = draw(evaluations, histories)
    if len(evaluations) > 1:
        table = [
            {"member": k, "accuracy": m["accuracy"], "loss": m["loss"], "best": k == best}
            for k, m in evaluations.items()
        ]
        rows = json.dumps(table, indent=2, sort_keys=True) + "\n"
        (folder / "comparison.json").write_text(rows, encoding="utf-8")
    for name, figure in figures.items():
        # No "Software" tag (it carries the matplotlib version): bytes stay stable.
        figure.savefig(
            folder / name, dpi=dpi, format="png", metadata={"Software": None}, bbox_inches="tight"
        )
    return {
        "figures": len(figures),
        "members": len(evaluations),
        "best_accuracy": evaluations[best]["accuracy"],
    }


def _read(folder: str | Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(folder) / name).read_text())
    return data


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
