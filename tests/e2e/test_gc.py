"""`gc`: versions no lock references leave the store; pinned ones, and a run's new ones, stay."""

from __future__ import annotations

import json
import re
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from pipeline.state.objects import object_name
from tests.e2e.support import FAST, actions, copy_workspace, make_cli, snapshot, status
from tests.e2e.test_crash_safety import _crashpoint, assert_valid

SECOND = ("train.epochs=3", "wandb.mode=disabled")
UNPINNED = {"model:v0", "evaluation:v0", "plots:v0"}


@pytest.fixture(scope="module")
def two_configs(ran_once: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workspace that ran once, then trained a second config: v0s unpinned, v1s pinned."""
    workspace = copy_workspace(ran_once, tmp_path_factory.mktemp("gc"))
    make_cli(workspace)("run", *SECOND)
    return workspace


@pytest.fixture
def trained(two_configs: Path, tmp_path: Path) -> Path:
    return copy_workspace(two_configs, tmp_path)


def _removed(output: str) -> set[str]:
    found = re.search(r"remove[d]? \d+ versions? \(([^)]*)\)", output)
    assert found, output
    return set(found.group(1).split(", "))


def _versions(workspace: Path) -> set[str]:
    artifacts = workspace / ".pipeline" / "artifacts"
    return {f"{p.parent.name}:{p.name}" for p in artifacts.glob("*/*")}


def _stray_objects(workspace: Path) -> set[str]:
    """Objects no indexed version uses."""
    root = workspace / ".pipeline"
    with sqlite3.connect(root / "index.sqlite") as db:
        rows = db.execute("SELECT manifest FROM versions").fetchall()
    used = {object_name(md5) for (text,) in rows for md5 in json.loads(text).values()}
    there = {p.relative_to(root / "objects").as_posix() for p in root.glob("objects/*/*")}
    return there - used


def test_gc_removes_the_unpinned_versions_and_keeps_the_pinned(trained: Path) -> None:
    cli = make_cli(trained)
    pinned = _versions(trained) - UNPINNED
    done = cli("gc")
    assert _removed(done.stdout) == UNPINNED
    assert re.search(r"\), [0-9.]+ kB freed$", done.stdout.strip()), done.stdout
    assert _versions(trained) == pinned
    assert _stray_objects(trained) == set()
    assert all(s["state"] == "fresh" for s in status(cli).values())
    assert "all 4 pinned artifact versions are intact" in cli("lock", "verify").stdout
    assert_valid(trained)
    # The runs that made the removed versions stay in the lineage, marked.
    assert "model:v0  (model, 3 files" in cli("lineage", "dataset-digits").stdout
    assert "(removed by gc)" in cli("lineage", "dataset-digits").stdout
    again = cli("gc")
    assert again.stdout == "nothing to remove: every version is pinned by the lock\n"


def test_dry_run_changes_nothing_and_lists_what_gc_removes(trained: Path) -> None:
    cli = make_cli(trained)
    before = snapshot(trained)
    dry = cli("gc", "--dry-run")
    assert snapshot(trained) == before
    listed = {line.split()[2] for line in dry.stdout.splitlines() if line.startswith("would ")}
    assert listed >= UNPINNED and "dry run: nothing was changed" in dry.stdout
    assert _removed(dry.stdout) == UNPINNED == _removed(cli("gc").stdout)


def _git(workspace: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=workspace,
        check=True,
        capture_output=True,
    )


def test_all_commits_keeps_what_an_older_committed_lock_pins(trained: Path, ran_once: Path) -> None:
    cli = make_cli(trained)
    assert cli("gc", "-A", check=False).stderr.startswith("error: `--all-commits`")
    lock = trained / "dvc_free_lock.yaml"
    now = lock.read_bytes()
    _git(trained, "init", "-q")
    shutil.copyfile(ran_once / lock.name, lock)  # the lock as it was before the second config
    _git(trained, "add", lock.name)
    _git(trained, "commit", "-qm", "epochs=2")
    lock.write_bytes(now)
    _git(trained, "commit", "-qam", "epochs=3")
    kept = cli("gc", "--all-commits")
    assert kept.stdout.startswith("nothing to remove: every version is pinned by the lock or its")
    assert _versions(trained) >= UNPINNED
    assert _removed(cli("gc").stdout) == UNPINNED


@pytest.mark.parametrize(
    ("target", "nth", "then"),
    [
        ("pipeline.state.collect:_forget", 1, "removed 3 versions"),  # the index not yet committed
        ("pipeline.state.collect:drop_folder", 2, "removed what an interrupted gc left"),
    ],
    ids=["in-the-index-transaction", "between-folders"],
)
def test_a_killed_gc_leaves_a_valid_store_and_the_next_finishes(
    trained: Path, target: str, nth: int, then: str
) -> None:
    crashed = _crashpoint(trained, target, str(nth), "after", "gc")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert_valid(trained)
    cli = make_cli(trained)
    assert all(s["state"] == "fresh" for s in status(cli).values())
    assert then in cli("gc").stdout
    assert not _versions(trained) & UNPINNED
    assert _stray_objects(trained) == set()
    assert list((trained / ".pipeline" / "tmp").iterdir()) == []
    assert_valid(trained)


def test_a_config_whose_outputs_were_collected_trains_again(trained: Path) -> None:
    cli = make_cli(trained)
    cli("gc")
    again = cli("run", "train", *FAST, "wandb.mode=disabled", "--json")
    assert actions(again)["train"] == "run"  # not a reuse of the collected model:v0
    model = json.loads(again.stdout)["steps"][-1]["outputs"]["model"]
    assert model["version"] == "v2"  # a collected number is not given again
    assert status(cli)["train"]["state"] == "fresh"
    assert_valid(trained)


def test_gc_waits_for_a_run_that_has_not_pinned_its_new_version(workspace: Path) -> None:
    # Paused after train committed model v1 and before the lock pins it, gc is started.
    gc = f"python -m pipeline gc > {workspace.parent / 'gc.out'}"
    ran = _crashpoint(
        workspace, "--start", gc, "--wait", "2",
        "--survive", "pipeline.execution.runner:_record", "2", "before", "run", "train", *SECOND,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "waiting for `run` or `pull` in this workspace to finish" in ran.stderr
    assert "was still running after" in ran.stderr
    said = (workspace.parent / "gc.out").read_text()
    assert said == "nothing to remove: every version is pinned by the lock\n"
    assert {"model:v0", "model:v1"} <= _versions(workspace)
    assert status(make_cli(workspace))["train"]["state"] == "fresh"
    assert_valid(workspace)


def test_gc_without_a_lock_is_one_line(tmp_path: Path) -> None:
    (tmp_path / ".pipeline").mkdir()
    found = make_cli(tmp_path)("gc", check=False)
    assert found.returncode == 2 and found.stdout == ""
    assert re.fullmatch(r"error: `.*dvc_free_lock.yaml` does not exist: [^\n]*\n", found.stderr)


def test_gc_removes_the_checkpoints_of_interrupted_runs(trained: Path) -> None:
    left = trained / ".pipeline" / "checkpoints" / ("f" * 64)
    left.mkdir(parents=True)
    (left / "train.pt").write_bytes(b"x" * 2048)
    cli = make_cli(trained)
    dry = cli("gc", "--dry-run").stdout
    assert "would remove the checkpoints of 1 interrupted run (2.0 kB); rerunning" in dry
    assert left.is_dir()
    assert "removed the checkpoints of 1 interrupted run (2.0 kB)" in cli("gc").stdout
    assert not left.exists()
