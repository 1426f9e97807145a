"""Sweeps on a real one-node SLURM cluster (tests/slurm_cluster.py), through submitit_slurm."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.support import actions, copy_workspace, handed_back, make_cli, spawn_cli
from tests.files import write_mnist
from tests.slurm_cluster import MISSING, Cluster

SWEEP = ("evaluate", "-m", "train.lr=1e-3,1e-2", "train.epochs=2")
SLURM = (
    "hydra/launcher=submitit_slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    # submitit takes a signal in the first 80% of the time limit (and 10 minutes before
    # it ends) as a preemption, which it requeues; a later one as the limit, requeued only
    # `hydra.launcher.max_num_timeout` times (Hydra's default: 0).
    "hydra.launcher.timeout_min=60",
)
#: Long enough to be interrupted after its first checkpoint, with seconds to spare past the
#: cluster's KillWait (2 s): 0.04 to 0.35 s an epoch on the test clusters we have seen.
EPOCHS = 100
LONG = (f"train.epochs={EPOCHS}",)
LRS = ("0.002", "0.004")

pytestmark = pytest.mark.skipif(
    MISSING is not None and not os.environ.get("CI"),
    reason=f"{MISSING} (required when CI is set; .ci/run installs it)",
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # Outside pytest's temporary folders: those are private to root, and mariadb runs as
    # its own user.
    folder = Path(tempfile.mkdtemp(prefix="lineage-slurm-"))
    started = Cluster(folder)
    try:
        yield started.start()
    finally:
        started.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _digests(workspace: Path) -> dict[str, str]:
    lock = yaml.safe_load((workspace / "dvc_free_lock.yaml").read_text())["stages"]
    return {
        f"{key}:{name}": out["digest"]
        for key, entry in lock.items()
        for name, out in entry["outputs"].items()
    }


def test_a_sweep_on_slurm_gives_the_basic_launchers_digests_and_shows_in_sacct(
    cluster: Cluster, ran_once: Path, tmp_path: Path
) -> None:
    found = {}
    for name, launcher in {"basic": (), "slurm": SLURM}.items():
        workspace = tmp_path / name
        shutil.copytree(ran_once, workspace)
        make_cli(workspace)("run", *SWEEP, *launcher, env={"SLURM_CONF": str(cluster.conf)})
        found[name] = _digests(workspace)
    assert len([k for k in found["basic"] if "[" in k]) == 4  # two models, two evaluations
    assert found["slurm"] == found["basic"]
    # The two-member waves ran as job arrays on the cluster, and SLURM accounted for them
    # (a job's end reaches the accounting a moment after its result reaches submitit).
    deadline, jobs = time.monotonic() + 60, []
    while time.monotonic() < deadline:
        jobs = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-o", "JobName,State"],
            capture_output=True,
            text=True,
            env=cluster.env,
            check=True,
        ).stdout.split()
        if jobs.count("train|COMPLETED") == 2 and jobs.count("evaluate|COMPLETED") == 2:
            break
        time.sleep(1)
    assert jobs.count("train|COMPLETED") == 2 and jobs.count("evaluate|COMPLETED") == 2, jobs


def _slurm(cluster: Cluster, *args: str) -> list[str]:
    done = subprocess.run(args, capture_output=True, text=True, env=cluster.env, check=True)
    return done.stdout.split()


def _started(workspace: Path, member: str, timeout: float = 300) -> str:
    """The SLURM job id of a member, once its training wrote a checkpoint."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in handed_back(workspace, "started.json"):
            fingerprint = _fingerprint_of(workspace, member)
            checkpoints = workspace / ".pipeline" / "checkpoints" / str(fingerprint)
            if record["member"] == member and list(checkpoints.glob("*")):
                return str(record["job_id"])
        time.sleep(0.1)
    raise AssertionError(f"{member} wrote no checkpoint in {timeout} s")


def _fingerprint_of(workspace: Path, member: str) -> str | None:
    import sqlite3

    with contextlib.closing(sqlite3.connect(workspace / ".pipeline" / "index.sqlite")) as db:
        row = db.execute(
            "SELECT fingerprint FROM runs WHERE stage=? ORDER BY id DESC LIMIT 1", (member,)
        ).fetchone()
    return str(row[0]) if row else None


@pytest.fixture(scope="module")
def uninterrupted(ran_once: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The models of the long sweep on the basic launcher, by learning rate."""
    workspace = copy_workspace(ran_once, tmp_path_factory.mktemp("uninterrupted"))
    make_cli(workspace)("run", "train", "-m", f"train.lr={','.join(LRS)}", *LONG)
    return _models(workspace)


def _models(workspace: Path) -> dict[str, str]:
    lock = yaml.safe_load((workspace / "dvc_free_lock.yaml").read_text())["stages"]
    return {
        str(entry["config"]["lr"]): entry["outputs"]["model"]["digest"]
        for key, entry in lock.items()
        if key.startswith("train[")
    }


def test_a_failing_member_names_its_slurm_job_and_log(
    cluster: Cluster, ran_once: Path, tmp_path: Path
) -> None:
    workspace = copy_workspace(ran_once, tmp_path)
    for root in ("good", "bad"):  # MNIST files, one with its images cut short
        raw = write_mnist(workspace / root)
    images = raw / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    failed = make_cli(workspace)(
        "run",
        "prepare_data",
        "-m",
        "prepare_data.dataset=mnist",
        "prepare_data.dataset.root=good,bad",
        *SLURM,
        check=False,
        env={"SLURM_CONF": str(cluster.conf)},
    )
    assert failed.returncode != 0
    (line,) = [x for x in failed.stderr.splitlines() if x.startswith("error:")]
    found = re.search(r"\(SLURM job (\d+_1), log (\S+)\)", line)
    assert line.startswith("error: stage `prepare_data[prepare_data.dataset.root=bad]`"), line
    assert found is not None, line
    assert "Traceback" in Path(found[2]).read_text()  # the job's log has the whole story
    assert "Traceback" not in failed.stderr
    # The member that worked is recorded: rerun, only the failed one would run.
    plan = make_cli(workspace)(
        "run",
        "prepare_data",
        "-m",
        "prepare_data.dataset=mnist",
        "prepare_data.dataset.root=good,bad",
        "--dry-run",
        "--json",
    )
    assert actions(plan) == {
        "prepare_data[prepare_data.dataset.root=good]": "reuse",
        "prepare_data[prepare_data.dataset.root=bad]": "run",
    }


def test_a_preempted_member_is_requeued_and_resumes_bit_for_bit(
    cluster: Cluster, ran_once: Path, tmp_path: Path, uninterrupted: dict[str, str]
) -> None:
    workspace = copy_workspace(ran_once, tmp_path)
    args = ("run", "train", "-m", f"train.lr={LRS[0]}", *LONG, *SLURM)
    with spawn_cli(workspace, *args, env={"SLURM_CONF": str(cluster.conf)}) as process:
        job = _started(workspace, f"train[train.epochs={EPOCHS},train.lr={LRS[0]}]")
        # What SLURM sends before a preemption or the time limit; submitit checkpoints the
        # job and requeues it (`scontrol requeue`), and it runs again.
        _slurm(cluster, "scancel", "--signal=USR2", job)
        deadline = time.monotonic() + 120
        while "PD" not in _slurm(cluster, "squeue", "-h", "-o", "%t", "-j", job):
            assert time.monotonic() < deadline, "the job was not requeued"
            time.sleep(0.2)
        # SLURM holds a requeued job back for a while (its BeginTime): start it now.
        _slurm(cluster, "scontrol", "update", f"JobId={job}", "StartTime=now")
        _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    (line,) = [x for x in stderr.splitlines() if x.startswith("train: resumed from epoch ")]
    assert 1 <= int(line.rsplit(" ", 1)[1]) < EPOCHS
    assert _models(workspace)[LRS[0]] == uninterrupted[LRS[0]]
    assert "Restarts=1" in _slurm(cluster, "scontrol", "show", "job", job)


def test_a_cancelled_member_is_reported_and_the_rerun_resumes_only_it(
    cluster: Cluster, ran_once: Path, tmp_path: Path, uninterrupted: dict[str, str]
) -> None:
    workspace = copy_workspace(ran_once, tmp_path)
    args = ("run", "train", "-m", f"train.lr={','.join(LRS)}", *LONG, *SLURM)
    env = {"SLURM_CONF": str(cluster.conf)}
    with spawn_cli(workspace, *args, env=env) as process:
        job = _started(workspace, f"train[train.lr={LRS[1]}]")
        _slurm(cluster, "scancel", job)
        _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1
    (line,) = [x for x in stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(
        f"error: stage `train[train.lr={LRS[1]}]` did not finish (SLURM job {job}, log "
    ), line
    assert "(SLURM: CANCELLED" in line and "rerun to resume it" in line
    rerun = make_cli(workspace)(*args, "--json", env=env)
    assert actions(rerun) == {
        "prepare_data": "reuse",
        f"train[train.lr={LRS[0]}]": "reuse",
        f"train[train.lr={LRS[1]}]": "run",
    }
    (resumed,) = [x for x in rerun.stderr.splitlines() if x.startswith("train: resumed from")]
    assert 1 <= int(resumed.rsplit(" ", 1)[1]) < EPOCHS
    assert _models(workspace) == uninterrupted
