"""Tests for running a stage as a Hydra app: `python -m stages.<stage>`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_stages_run_as_hydra_apps(tmp_path: Path) -> None:
    prepared = _run(
        "-m", "stages.prepare_data", "dataset=mnist1d", "dataset.num_samples=100",
        "out=o", "hydra.run.dir=h1", cwd=tmp_path,
    )  # fmt: skip
    assert prepared.returncode == 0, prepared.stderr
    assert json.loads((tmp_path / "o/dataset/meta.json").read_text())["input_shape"] == [1, 40]
    trained = _run(
        "-m", "stages.train", "dataset=o/dataset", "out=o", "epochs=1", "model=mlp",
        "model.hidden=8", "device=cpu", "hydra.run.dir=h2", cwd=tmp_path,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    record = json.loads((tmp_path / "o/model/model.json").read_text())
    assert record["kwargs"]["hidden"] == 8 and record["in_shape"] == [1, 40]
    assert (tmp_path / "h2" / "train.log").exists()


def test_a_stage_app_checks_the_ranges_its_task_declares(tmp_path: Path) -> None:
    refused = _run("-m", "stages.prepare_data", "out=o", "val_fraction=1.5", cwd=tmp_path)
    assert refused.returncode == 1
    assert "1 validation error for prepare_data\nval_fraction\n" in refused.stderr
    assert not (tmp_path / "o").exists()
