"""A run killed at any instant leaves a valid store and lock, and the next run picks up.

Killed inside a write too: a reader at that instant sees the old lock whole and no version
folder half built; and two processes writing the lock each keep the other's block.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.core import lock, lockfile, paths
from pipeline.state.store import Store
from tests.e2e.crashpoint import look
from tests.e2e.support import FAST, actions, env_for, make_cli

CRASHPOINT = Path(__file__).with_name("crashpoint.py")
ARGS = (*FAST, "wandb.mode=disabled")

# (function, its N-th call, kill before or after it), in the order a full run reaches them:
# prepare_data's commit (7 files), train, evaluate, plot, and the lock writes between. A
# job builds its version folders and hands back a record (`started.json`, `result.json`,
# each renamed in); the submitting process records them in the index.
POINTS = [
    ("pipeline.core.digest:file_md5", 3, "before"),  # hashing the dataset's files (7 of them)
    ("os:link", 3, "after"),  # some objects stored, others not
    ("os:chmod", 5, "before"),  # an object linked in, not yet read-only
    ("os:link", 11, "after"),  # the version folder half built, aside
    ("pathlib:Path.rename", 1, "after"),  # the folder renamed in, the index not told
    ("pipeline.execution.runner:_record", 1, "before"),  # dataset committed, lock not yet written
    ("os:fsync", 1, "after"),  # the lock's new text written, not renamed
    ("os:replace", 3, "after"),  # the lock renamed (after the job's two records): prepare_data
    ("stages.train:_epoch", 2, "before"),  # in the middle of training
    ("pipeline.state.objects:Files.materialise", 2, "after"),  # model's folder built, not booked
    (
        "pipeline.execution.wave:_book",
        2,
        "before",
    ),  # train's job handed its record back, none booked
    ("pipeline.state.store:Store.record", 2, "after"),  # the model recorded, its run not ended
    ("pipeline.execution.runner:_record", 3, "before"),  # evaluation committed, lock not updated
    ("matplotlib.figure:Figure.savefig", 2, "before"),  # plot half drawn
    ("os:link", 26, "after"),  # plot's objects partly stored
    ("os:fsync", 4, "after"),  # the last lock write, not renamed
]


def _crashpoint(workspace: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``crashpoint.py ARGV`` in ``workspace`` (see its docstring)."""
    return subprocess.run(
        [sys.executable, str(CRASHPOINT), *argv],
        cwd=workspace,
        env=env_for(workspace),
        capture_output=True,
        text=True,
        timeout=600,
    )


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
    return _digests(lockfile.read(workspace / paths.LOCK_NAME))


def assert_valid(workspace: Path) -> lock.Lock:
    """The lock parses and pins only intact versions; every visible version is complete."""
    found = lockfile.read(workspace / paths.LOCK_NAME)
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
        # Each version once: a sweep's lock pins the same dataset thousands of times.
        pinned = {pin for entry in found.stages.values() for pin in entry.outputs.values()}
        for pin in sorted(pinned, key=lambda p: (p.name, p.version)):
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
    crashed = _crashpoint(workspace, target, str(nth), when, "run", *ARGS)
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


def _add_a_large_sweep(workspace: Path, members: int = 3000) -> str:
    """Give the lock the blocks of a sweep of ``train.lr`` (3000 members: 4.6 MB); its text."""
    path = workspace / paths.LOCK_NAME
    found = lockfile.read(path)
    train = found.stages["train"]
    stages = dict(found.stages)
    for i in range(1, members + 1):
        lr = f"{i * 1e-5:.5f}"
        stages[f"train[train.lr={lr}]"] = dataclasses.replace(
            train,
            config={**train.config, "lr": float(lr)},
            overrides=(*train.overrides, f"lr={lr}"),
        )
    lockfile.write(path, lock.Lock(stages))
    return path.read_text(encoding="utf-8")


def test_a_kill_inside_the_write_of_a_large_lock_leaves_the_old_lock_whole(
    workspace: Path, tmp_path: Path
) -> None:
    old = _add_a_large_sweep(workspace)
    seen = tmp_path / "seen.json"
    args = ("run", "prepare_data", "prepare_data.seed=1", "wandb.mode=disabled")
    # The run rewrites the lock once, for prepare_data: it dies with 1 MiB of the new text
    # written, and a reader looks at the workspace at that instant.
    point = ("file:*dvc_free_lock.yaml*", "1", str(2**20))
    crashed = _crashpoint(workspace, "--look", str(seen), *point, *args)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert len(old) > 2**20
    # Not renamed yet: the old lock is the only whole one, byte for byte, never a torn one.
    assert json.loads(seen.read_text())["lock"] == old
    assert (workspace / paths.LOCK_NAME).read_text(encoding="utf-8") == old
    # The new text is left beside the lock, named after its dead writer, and the store
    # removes it when it is next opened.
    (left,) = workspace.glob(f"{lockfile.temp_prefix(paths.LOCK_NAME)}*")
    assert_valid(workspace)
    assert not left.exists()

    make_cli(workspace)(*args)
    new = (workspace / paths.LOCK_NAME).read_text(encoding="utf-8")
    assert lockfile.read(workspace / paths.LOCK_NAME).stages["prepare_data"].config["seed"] == 1
    # The blocks before and after prepare_data's (the sweep's among them) are as they were.
    head, tail = old.split("\n  prepare_data:\n")[0], old.split("\n  train:\n")[1]
    assert new.startswith(head) and new.endswith(tail) and new != old


# A model of 4.5 MB (`state_dict.pt`), built fast: one epoch of a wide MLP on digits.
WIDE: tuple[str, ...] = ("run", "train", "wandb.mode=disabled", "train.epochs=1")
WIDE += ("train.model=mlp", "train.model.hidden=1024")
HALF_BUILT = [
    # Links: the dataset's 7 objects and 7 folder entries, the model's 3 objects, then 2 of
    # the 3 files of its version folder.
    ("os:link", "19", "after"),
    # No hard links (the store copies): 1 MiB into the copy of the weights into the folder.
    ("--no-links", "file:state_dict.pt", "1", str(2**20)),
]


@pytest.mark.parametrize("point", HALF_BUILT, ids=["links", "copies"])
def test_a_reader_never_sees_a_version_folder_half_built(
    tmp_path: Path, point: tuple[str, ...]
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    seen = tmp_path / "seen.json"
    crashed = _crashpoint(workspace, "--look", str(seen), *point, *WIDE)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    visible = json.loads(seen.read_text())["versions"]
    assert "dataset-digits/v0" in visible, visible  # the kill came after the dataset's commit
    assert_valid(workspace)

    make_cli(workspace)(*WIDE)
    assert_valid(workspace)
    done = tmp_path / "done.json"
    look(workspace, done)
    finished = json.loads(done.read_text())["versions"]
    # Whatever a reader saw as `NAME/vN` holds every file of that version, each whole.
    assert visible == {folder: finished.get(folder) for folder in visible}
    assert "model/v0" not in visible  # the kill came before the model's folder was whole
    assert list((workspace / ".pipeline" / "tmp").iterdir()) == []
    versions = workspace / ".pipeline" / "artifacts"
    # Read-only, whether linked to their objects or copied (no hard links).
    assert {f.stat().st_mode & 0o222 for f in versions.glob("*/v*/**/*") if f.is_file()} == {0}


def _without_plot(workspace: Path) -> str:
    """Drop plot's block from the lock (its run stays in the store); the command restoring it.

    `run plot` then reuses every stage and writes back only plot's block, in a second.
    """
    path = workspace / paths.LOCK_NAME
    lockfile.write(path, lockfile.read(path).without_stage("plot"))
    return shlex.join([sys.executable, "-m", "pipeline", "run", "plot", "wandb.mode=disabled"])


FORCED = ("run", "prepare_data", "--force", "wandb.mode=disabled")  # rewrites its own block


def test_a_lock_write_keeps_a_block_written_since_the_run_read_the_lock(workspace: Path) -> None:
    whole = (workspace / paths.LOCK_NAME).read_text(encoding="utf-8")
    other = _without_plot(workspace)
    # This run read the lock without plot at its start; just before it records prepare_data,
    # another process writes plot's block back.
    point = ("pipeline.execution.runner:_record", "1", "before")
    ran = _crashpoint(workspace, "--run", other, "--survive", *point, *FORCED)
    assert ran.returncode == 0, ran.stderr
    assert (workspace / paths.LOCK_NAME).read_text(encoding="utf-8") == whole


def test_a_lock_write_holds_off_another_writer_until_it_is_done(workspace: Path) -> None:
    whole = (workspace / paths.LOCK_NAME).read_text(encoding="utf-8")
    other = _without_plot(workspace)
    # Between this run's re-read of the lock and its write, another process tries to write
    # plot's block: it must wait for the file lock, then write on top of this run's lock.
    point = ("pipeline.core.lockfile:_write", "1", "before")
    ran = _crashpoint(workspace, "--start", other, "--wait", "5", "--survive", *point, *FORCED)
    assert ran.returncode == 0, ran.stderr
    assert "was still running after 5.0 s" in ran.stderr
    assert (workspace / paths.LOCK_NAME).read_text(encoding="utf-8") == whole
