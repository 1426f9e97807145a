"""Tests for the `plot` stage."""

from __future__ import annotations

from pathlib import Path

from stages.plot import plot

FIGURES = ["confusion_matrix.png", "learning_curves.png", "per_class_accuracy.png"]


def test_plot_writes_byte_stable_pngs(
    evaluation_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    for run in "ab":
        assert plot(evaluation_dir, model_dir, tmp_path / run, dpi=40) == {"figures": 3}
    assert sorted(p.name for p in (tmp_path / "a" / "plots").iterdir()) == FIGURES
    for name in FIGURES:
        a, b = ((tmp_path / run / "plots" / name).read_bytes() for run in "ab")
        assert a.startswith(b"\x89PNG\r\n\x1a\n") and a == b, name
        assert b"matplotlib" not in a  # no version tag in the metadata
