"""Training survives a kill: the rerun resumes from its last epoch to the uninterrupted bits."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import yaml

from tests.e2e.support import copy_workspace, make_cli, spawn_cli

LONG = ("train.epochs=25", "train.lr=0.004")


def _model_digest(workspace: Path) -> str:
    lock = yaml.safe_load((workspace / "dvc_free_lock.yaml").read_text())
    return str(lock["stages"]["train"]["outputs"]["model"]["digest"])


def test_a_killed_training_resumes_from_its_checkpoint(ran_once: Path, tmp_path: Path) -> None:
    whole = copy_workspace(ran_once, tmp_path / "whole")
    make_cli(whole)("run", "train", *LONG)
    killed = copy_workspace(ran_once, tmp_path / "killed")
    process = spawn_cli(killed, "run", "train", *LONG, output=False)
    checkpoints = killed / ".pipeline" / "checkpoints"
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("*/train.pt")) and time.monotonic() < deadline:
        assert process.poll() is None, "train ended before it could be killed"
        time.sleep(0.05)
    time.sleep(0.5)  # a few more epochs
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    dry = make_cli(killed)("gc", "--dry-run").stdout  # gc knows the checkpoint
    assert "would remove the checkpoints of 1 interrupted run" in dry
    resumed = make_cli(killed)("run", "train", *LONG)
    line = next(x for x in resumed.stderr.splitlines() if "train: resumed from epoch " in x)
    epoch = int(line.rsplit(" ", 1)[1])
    assert 1 <= epoch < 25
    assert f"train: epoch {epoch + 1} " in resumed.stderr
    assert "train: epoch 1 " not in resumed.stderr
    assert _model_digest(killed) == _model_digest(whole)
    # Committed: the checkpoint went with the success.
    assert not list(checkpoints.glob("*/train.pt"))
