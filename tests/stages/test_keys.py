"""`python -m stages.<stage> --help` lists every key with its type, range and default."""

from __future__ import annotations

import subprocess
import sys

import stages
from stages import keys

TRAIN = {s.name: s for s in stages.STAGES}["train"]


def test_each_key_has_its_type_range_and_default() -> None:
    rows = {key: (type_, default) for key, type_, default in keys.rows(TRAIN)}
    assert rows["epochs"] == ("int >= 1", "30")
    assert rows["lr"] == ("float > 0", "0.003")
    assert rows["device"] == ("auto | cpu | cuda", "auto")
    assert rows["model"] == ("option (below)", "cnn")
    assert rows["model.channels"] == ("list of int >= 1", "[32, 64]")
    assert rows["model.dropout"] == ("float >= 0 < 1", "0.1")
    # Paths the pipeline fills and Hydra's own keys are not the user's to set.
    assert not {"dataset", "out", "defaults", "_target_"} & set(rows)


def test_another_option_shows_its_own_keys() -> None:
    rows = {key for key, _, _ in keys.rows(TRAIN, {"model": "mlp"})}
    assert {"model.hidden", "model.depth"} <= rows
    assert "model.channels" not in rows


def test_the_stage_apps_help_page_is_the_table() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "stages.train", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert shown.startswith("train: Train `model(in_shape, num_classes)` with AdamW")
    assert "  epochs             int >= 1           30\n" in shown
    assert "options of model: cnn, efficientnet_b0, mlp," in shown
    assert "_target_" not in shown and "_partial_" not in shown
