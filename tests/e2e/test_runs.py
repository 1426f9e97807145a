"""`pipeline runs`, the experiments table, on real runs: the lock's rows, every run, formats."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

from tests.e2e.support import TRAIN_FAILS, Cli, make_cli


def test_the_table_lists_the_locks_stages_with_metrics_versions_and_wandb_runs(cli: Cli) -> None:
    cli("run", "evaluate", "train.lr=0.01")
    lines = cli("runs").stdout.splitlines()
    assert lines[0].split() == ["key", "run", "outputs", "config", "metrics", "wandb"]
    assert [line.split()[0] for line in lines[1:]] == ["prepare_data", "train", "evaluate", "plot"]
    train = lines[2].split()
    assert train[:5] == ["train", "#5", "model:v1", "train.epochs=2", "train.lr=0.01"]
    assert train[-2] == "offline"
    doc = json.loads(cli("runs", "--json").stdout)["runs"]
    assert [r["key"] for r in doc] == ["prepare_data", "train", "evaluate", "plot"]
    assert doc[2]["metrics"]["accuracy"] > 0.5 and doc[2]["outputs"] == ["evaluation:v1"]
    assert doc[3]["status"] == "pinned"


def test_every_run_sorted_by_a_metric_as_csv(cli: Cli) -> None:
    cli("run", "evaluate", "train.lr=0.01")
    assert cli("run", "train", *TRAIN_FAILS, check=False).returncode == 1
    table = list(csv.DictReader(io.StringIO(cli("runs", "evaluate", "--all", "--csv").stdout)))
    assert [t["run"] for t in table] == ["3", "6"]  # both evaluations, oldest first
    ranked = list(csv.DictReader(io.StringIO(cli("runs", "--all", "--sort", "accuracy",
                                                 "--csv").stdout)))  # fmt: skip
    accuracies = [float(t["accuracy"]) for t in ranked if t["accuracy"]]
    assert accuracies == sorted(accuracies, reverse=True) and len(accuracies) == 2
    assert ranked[0]["stage"] == "evaluate"
    text = cli("runs", "train", "--all").stdout
    assert "(failed)" in text.splitlines()[-1]
    # The index keeps the config Hydra composed: the option shows as what it builds.
    # (the option's own numbers follow from it; a text key names the variant).
    assert "train.model.name=squeezenet1_0" in text.splitlines()[-1]


def test_a_fresh_clone_lists_the_locks_rows_in_order(workspace: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    clone.mkdir()
    shutil.copy(workspace / "dvc_free_lock.yaml", clone)
    lines = make_cli(clone)("runs").stdout.splitlines()
    assert [line.split()[:2] for line in lines[1:]] == [
        ["prepare_data", "-"], ["train", "-"], ["evaluate", "-"], ["plot", "-"],
    ]  # fmt: skip
    assert not (clone / ".pipeline").exists()  # reading the table made no store
