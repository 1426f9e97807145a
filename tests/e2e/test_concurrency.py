"""Several `run` processes on one workspace: all succeed, each fingerprint runs once."""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

from pipeline import lock
from pipeline.store import Store
from tests.e2e.support import FAST, env_for, make_cli
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
    fingerprint = lock.read(source / lock.LOCK_NAME).stages["prepare_data"].fingerprint

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
