"""A run killed at any instant leaves a valid store and lock, and the next run picks up."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import lock
from pipeline.store import Store
from tests.e2e.support import FAST, actions, env_for, make_cli

CRASHPOINT = Path(__file__).with_name("crashpoint.py")
ARGS = (*FAST, "wandb.mode=disabled")

# (function, its N-th call, kill before or after it), in the order a full run reaches them:
# prepare_data's commit (7 files), train, evaluate, plot, and the lock writes between.
POINTS = [
    ("pipeline.digest:file_md5", 3, "before"),  # hashing the dataset's files (7 of them)
    ("os:link", 3, "after"),  # some objects stored, others not
    ("os:chmod", 5, "before"),  # an object linked in, not yet read-only
    ("os:link", 11, "after"),  # the version folder half built, aside
    ("pathlib:Path.rename", 1, "after"),  # the folder renamed in, the index not committed
    ("pipeline.runner:_record", 1, "before"),  # dataset committed, lock not yet written
    ("os:fsync", 1, "after"),  # the lock's new text written, not renamed
    ("os:replace", 1, "after"),  # the lock renamed: it holds prepare_data only
    ("stages.train:_epoch", 2, "before"),  # in the middle of training
    ("pipeline.store:Store._materialise", 2, "after"),  # inside the model's index transaction
    ("pipeline.runs:RunIndex.end", 2, "before"),  # model committed, its run not marked done
    ("pipeline.runner:_record", 3, "before"),  # evaluation committed, lock not updated
    ("matplotlib.figure:Figure.savefig", 2, "before"),  # plot half drawn
    ("os:link", 26, "after"),  # plot's objects partly stored
    ("os:fsync", 4, "after"),  # the last lock write, not renamed
]


def _digests(found: lock.Lock) -> dict[str, dict[str, str]]:
    return {
        stage: {k: p.digest for k, p in entry.outputs.items()}
        for stage, entry in found.stages.items()
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """The output digests of an uninterrupted run."""
    workspace = tmp_path_factory.mktemp("reference") / "ws"
    workspace.mkdir()
    make_cli(workspace)("run", *ARGS)
    return _digests(lock.read(workspace / lock.LOCK_NAME))


def assert_valid(workspace: Path) -> lock.Lock:
    """The lock parses and pins only intact versions; every visible version is complete."""
    found = lock.read(workspace / lock.LOCK_NAME)
    artifacts = workspace / ".pipeline" / "artifacts"
    if artifacts.exists():  # nothing half-built is visible beside the versions
        for folder in artifacts.iterdir():
            assert all(re.fullmatch(r"v[0-9]+", v.name) for v in folder.iterdir()), folder
    store = Store(workspace)
    try:
        for version in store.all_versions():
            pin = lock.OutputPin(
                version["name"],
                version["type"],
                version["version"],
                version["digest"],
                version["size"],
                version["files"],
            )
            assert store.verify(pin) is None, version
        for entry in found.stages.values():
            for pin in entry.outputs.values():
                assert store.verify(pin) is None, pin
    finally:
        store.close()
    return found


@pytest.mark.parametrize(
    ("target", "nth", "when"), POINTS, ids=[f"{t}#{n}-{w}" for t, n, w in POINTS]
)
def test_a_run_killed_anywhere_resumes_with_the_same_digests(
    tmp_path: Path, reference: dict[str, dict[str, str]], target: str, nth: int, when: str
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    crashed = subprocess.run(
        [sys.executable, str(CRASHPOINT), target, str(nth), when, "run", *ARGS],
        cwd=workspace,
        env=env_for(workspace),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    survived = assert_valid(workspace)
    assert set(survived.stages) < set(reference)  # the kill came before the end

    resumed = make_cli(workspace)("run", *ARGS, "--json")
    done = actions(resumed)
    assert all(done[stage] == "reuse" for stage in survived.stages), done
    assert _digests(assert_valid(workspace)) == reference
    assert list((workspace / ".pipeline" / "tmp").iterdir()) == []  # leftovers cleaned


@pytest.mark.parametrize(
    ("sent", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"]
)
def test_ctrl_c_or_sigterm_stops_cleanly_and_the_next_run_resumes(
    tmp_path: Path, reference: dict[str, dict[str, str]], sent: signal.Signals, code: int
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    # Enough epochs that the interrupt lands while train runs; W&B offline, as users run.
    args = ("run", "train.epochs=200")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        cwd=workspace,
        env=env_for(workspace),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("train: run"):
            break
    index = workspace / ".pipeline" / "index.sqlite"
    for _ in range(600):  # until train's run is in the index: the signal lands inside it
        with sqlite3.connect(index) as db:
            if db.execute("SELECT 1 FROM runs WHERE stage='train'").fetchone():
                break
        time.sleep(0.05)
    proc.send_signal(sent)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == code, stderr
    assert stderr.strip().splitlines()[-1] == (
        "interrupted: stages that finished are kept in the store and the lock; "
        "resume with `python -m pipeline run train.epochs=200`"
    )
    assert "Traceback" not in stderr
    assert set(assert_valid(workspace).stages) == {"prepare_data"}
    assert list((workspace / ".pipeline" / "tmp").iterdir()) == []
    with sqlite3.connect(index) as db:
        runs = dict(db.execute("SELECT stage, status FROM runs").fetchall())
    assert runs == {"prepare_data": "ok", "train": "interrupted"}
    resumed = make_cli(workspace)("run", *ARGS, "--json")
    assert actions(resumed)["prepare_data"] == "reuse"
    assert _digests(assert_valid(workspace)) == reference
