"""Tests for the `plot` stage."""

from __future__ import annotations

import json
from pathlib import Path

from stages.plot import plot
from tests.stages.test_figures import FORTY, synthetic

FIGURES = ["confusion_matrix.png", "learning_curves.png", "per_class_accuracy.png"]


def test_plot_writes_byte_stable_pngs(
    evaluation_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    for run in "ab":
        metrics = plot({"default": evaluation_dir}, {"default": model_dir}, tmp_path / run, dpi=40)
        assert metrics["figures"] == 3
        assert metrics["members"] == 1
    assert sorted(p.name for p in (tmp_path / "a" / "plots").iterdir()) == FIGURES
    for name in FIGURES:
        a, b = ((tmp_path / run / "plots" / name).read_bytes() for run in "ab")
        assert a.startswith(b"\x89PNG\r\n\x1a\n") and a == b, name
        assert b"matplotlib" not in a  # no version tag in the metadata


def test_plot_compares_the_members_of_a_sweep(
    evaluation_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    import shutil

    worse = tmp_path / "worse"
    shutil.copytree(evaluation_dir, worse)
    metrics = json.loads((worse / "metrics.json").read_text())
    metrics["accuracy"] = metrics["accuracy"] / 2
    (worse / "metrics.json").write_text(json.dumps(metrics))
    evaluations = {"train.lr=0.1": worse, "train.lr=0.01": evaluation_dir}
    models = {"train.lr=0.1": model_dir, "train.lr=0.01": model_dir}
    result = plot(evaluations, models, tmp_path / "out", dpi=40)
    assert result["members"] == 2
    assert result["figures"] == 4
    folder = tmp_path / "out" / "plots"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*FIGURES, "comparison.png", "comparison.json"]
    )
    table = json.loads((folder / "comparison.json").read_text())
    assert [(row["member"], row["best"]) for row in table] == [
        ("train.lr=0.01", True),
        ("train.lr=0.1", False),
    ]
    assert result["best_accuracy"] == table[0]["accuracy"]


def test_forty_members_keep_the_file_names_and_the_table(tmp_path: Path) -> None:
    evaluations, histories = synthetic(FORTY, epochs=3)
    folders = {}
    for label in FORTY:
        folder = tmp_path / str(len(folders))
        folder.mkdir()
        (folder / "metrics.json").write_text(json.dumps(evaluations[label]))
        (folder / "history.json").write_text(json.dumps(histories[label]))
        folders[label] = folder
    result = plot(folders, folders, tmp_path / "out", dpi=30)
    assert (result["members"], result["figures"]) == (40, 4)
    folder = tmp_path / "out" / "plots"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*FIGURES, "comparison.png", "comparison.json"]
    )
    table = json.loads((folder / "comparison.json").read_text())
    assert [row["member"] for row in table] == sorted(FORTY)
