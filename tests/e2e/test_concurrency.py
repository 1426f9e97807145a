"""Several `run` processes on one workspace: all succeed, each fingerprint runs once."""

from __future__ import annotations

import collections
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from filelock import FileLock

from pipeline.core import lockfile, paths
from pipeline.state.store import Store
from tests.e2e.support import FAST, Cli, env_for, make_cli
from tests.e2e.test_crash_safety import assert_valid


def _start(workspace: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", *args],
        cwd=workspace,
        env=env_for(workspace),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_four_runs_at_once_on_a_fresh_workspace(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    procs = [_start(workspace, *FAST) for _ in range(4)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    assert [rc for rc, _, _ in results] == [0, 0, 0, 0], results

    found = assert_valid(workspace)
    assert set(found.stages) == {"prepare_data", "train", "evaluate", "plot"}
    store = Store(workspace)
    versions = collections.Counter(v["name"] for v in store.all_versions())
    runs = collections.Counter(r["fingerprint"] for r in store.runs.all() if r["status"] == "ok")
    store.close()
    assert set(versions.values()) == {1}, versions  # one version per artifact digest
    assert set(runs.values()) == {1}, runs  # each fingerprint computed once, then reused
    assert {e.fingerprint for e in found.stages.values()} == set(runs)


def test_a_run_waits_for_a_claimed_stage_and_says_so(tmp_path: Path) -> None:
    source = tmp_path / "first"
    source.mkdir()
    make_cli(source)("run", "prepare_data", "wandb.mode=disabled")
    fingerprint = lockfile.read(source / paths.LOCK_NAME).stages["prepare_data"].fingerprint

    for flags in ((), ("--json",)):  # with --json too: stdout is the document, stderr says it
        workspace = tmp_path / f"ws{len(flags)}"
        (workspace / ".pipeline" / "locks").mkdir(parents=True)
        claim = FileLock(workspace / ".pipeline" / "locks" / f"{fingerprint}.lock")
        claim.acquire()  # as another process running prepare_data would hold it
        proc = _start(workspace, "prepare_data", "wandb.mode=disabled", *flags)
        assert proc.stderr is not None
        assert proc.stderr.readline() == (
            "prepare_data: waiting for another process in this workspace that runs it\n"
        )
        claim.release()
        stdout, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0
        assert ('"action": "run"' if flags else "prepare_data: done") in stdout


def test_a_busy_index_is_waited_for_with_a_message_then_given_up(workspace: Path, cli: Cli) -> None:
    """Another process holding a write on the index: `status` answers, `run` waits, then stops.

    The bound (`PIPELINE_INDEX_WAIT`, 60 s unless set) is stated in the message; the run
    that gave up leaves no staging folder and the lock as it was.
    """
    holder = sqlite3.connect(workspace / ".pipeline" / "index.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert cli("status").returncode == 0  # readers are not blocked by a writer (WAL)
        before = (workspace / paths.LOCK_NAME).read_bytes()
        started = time.monotonic()
        result = cli("run", "--force", "plot", *FAST, env={"PIPELINE_INDEX_WAIT": "2"}, check=False)
        waited = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "waiting for another process writing the store's index (up to 2 s)" in lines[0]
    assert lines[1:] == [
        "error: the store's index `.pipeline/index.sqlite` stayed busy for 2 s: another process "
        "is writing it (`fuser .pipeline/index.sqlite` names it); let it finish or stop it, "
        "then rerun (wait longer with PIPELINE_INDEX_WAIT=SECONDS)"
    ]
    assert waited >= 2
    assert (workspace / paths.LOCK_NAME).read_bytes() == before
    assert list((workspace / ".pipeline" / "tmp").iterdir()) == []
    assert cli("run", *FAST, "--json").returncode == 0  # free again: the next run goes on
