"""The experiments table from the lock and the index: what sets rows apart, sorting, formats."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from pipeline.core import experiments
from pipeline.core.errors import UsageError
from pipeline.core.lock import InputPin, Lock, OutputPin, StageLock

D = "0" * 32


def _block(stage: str, version: str, config: dict[str, Any], metrics: dict[str, Any], fp: str,
           overrides: tuple[str, ...] = ()) -> StageLock:  # fmt: skip
    """A block whose output digest is its fingerprint; evaluate `vN` uses model `vN`."""
    out = {"train": ("model", "model"), "evaluate": ("evaluation", "evaluation")}[stage]
    inputs = {"dataset": InputPin("dataset-digits", "v0", D)}
    if stage == "evaluate":
        inputs["model"] = InputPin("model", version, "t" + fp[1:])
    return StageLock(
        fingerprint=fp,
        code_digest=D,
        code={},
        config={"_target_": f"stages.{stage}.{stage}", **config},
        overrides=overrides,
        inputs=inputs,
        outputs={out[0]: OutputPin(out[0], out[1], version, fp, 1, 1)},
        metrics=metrics,
    )


LOCK = Lock(
    stages={
        "evaluate": _block("evaluate", "v0", {"batch_size": 256}, {"accuracy": 0.9}, "e0"),
        "train": _block(
            "train", "v0", {"lr": 0.003, "epochs": 2}, {"val_loss": 0.3}, "t0", ("epochs=2",)
        ),
        "train[train.lr=0.01]": _block(
            "train", "v1", {"lr": 0.01, "epochs": 2}, {"val_loss": 0.2}, "t1", ("epochs=2",)
        ),
        "evaluate[train.lr=0.01]": _block(
            "evaluate", "v1", {"batch_size": 256}, {"accuracy": 0.95}, "e1"
        ),
    }
)
WANDB = {"id": "abc", "mode": "offline", "project": "lineage", "entity": None}
RUNS = [
    {"run": 1, "stage": "train", "fingerprint": "t0", "status": "ok", "wandb": WANDB,
     "config": {"lr": 0.003, "epochs": 2}, "metrics": {"val_loss": 0.3},
     "outputs": {"model": {"name": "model", "version": "v0"}}},
    {"run": 2, "stage": "evaluate", "fingerprint": "e0", "status": "ok", "wandb": {},
     "config": {"batch_size": 256}, "metrics": {"accuracy": 0.9}, "outputs": {}},
    {"run": 3, "stage": "train[train.lr=0.01]", "fingerprint": "tx", "status": "failed",
     "wandb": {}, "config": {"lr": 0.01, "epochs": 2}, "metrics": {}, "outputs": {}},
]  # fmt: skip


def test_the_lock_gives_a_row_per_block_upstream_first_with_the_run_that_made_it() -> None:
    rows = experiments.from_lock(LOCK, RUNS)
    assert [r.key for r in rows] == [
        "train",
        "train[train.lr=0.01]",
        "evaluate",
        "evaluate[train.lr=0.01]",
    ]
    assert rows[0].run == 1 and rows[0].wandb == "offline abc"
    assert rows[1].run is None  # the failed run did not make the pinned version
    assert rows[1].outputs == ("model:v1",)
    # What sets a row apart: keys that differ between the stage's rows, and its overrides.
    assert rows[0].config == {"train.epochs": 2, "train.lr": 0.003}
    assert rows[1].config == {"train.epochs": 2, "train.lr": 0.01}
    assert rows[2].config == {}


def test_the_index_gives_every_run_failed_ones_too() -> None:
    rows = experiments.from_index(RUNS)
    assert [(r.run, r.key, r.status) for r in rows] == [
        (1, "train", "ok"),
        (2, "evaluate", "ok"),
        (3, "train[train.lr=0.01]", "failed"),
    ]
    assert rows[2].config == {"train.lr": 0.01}
    assert "#3 (failed)" in experiments.text(rows)


def test_sorting_puts_the_best_first_and_rows_without_the_metric_last() -> None:
    rows = experiments.from_lock(LOCK, RUNS)
    best = experiments.sort(rows, "accuracy")
    assert [r.key for r in best] == [
        "evaluate[train.lr=0.01]",
        "evaluate",
        "train",
        "train[train.lr=0.01]",
    ]
    lowest = experiments.sort(experiments.select(rows, "train"), "val_loss", ascending=True)
    assert [r.key for r in lowest] == ["train[train.lr=0.01]", "train"]


def test_unknown_metric_or_stage_is_one_line_naming_the_choices() -> None:
    rows = experiments.from_lock(LOCK, RUNS)
    with pytest.raises(UsageError) as caught:
        experiments.sort(rows, "acuracy")
    assert str(caught.value) == (
        "`--sort acuracy`: no row has that metric; did you mean `accuracy`? "
        "(metrics: accuracy, val_loss)"
    )
    with pytest.raises(UsageError, match=r"no runs of stage `trian`; did you mean `train`\?"):
        experiments.select(rows, "trian")


def test_text_json_and_csv_hold_the_same_rows() -> None:
    rows = experiments.from_lock(LOCK, RUNS)
    lines = experiments.text(rows).splitlines()
    assert lines[0].split() == ["key", "run", "outputs", "config", "metrics", "wandb"]
    assert lines[2].split() == [
        "train[train.lr=0.01]", "-", "model:v1", "train.epochs=2", "train.lr=0.01",
        "val_loss", "0.2", "-",
    ]  # fmt: skip
    doc = json.loads(experiments.as_json(rows))
    assert [r["key"] for r in doc["runs"]] == [r.key for r in rows]
    assert doc["runs"][0]["config"] == {"train.epochs": 2, "train.lr": 0.003}
    table = list(csv.DictReader(io.StringIO(experiments.as_csv(rows))))
    assert [t["key"] for t in table] == [r.key for r in rows]
    assert table[1]["train.lr"] == "0.01" and table[3]["accuracy"] == "0.95"
    assert table[2]["train.lr"] == ""
    assert experiments.text([]) == "no runs yet: `python -m pipeline run` makes the first\n"
