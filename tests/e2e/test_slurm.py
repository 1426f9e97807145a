"""Sweeps on a real one-node SLURM cluster (tests/slurm_cluster.py), through submitit_slurm."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.support import make_cli
from tests.slurm_cluster import MISSING, Cluster

SWEEP = ("evaluate", "-m", "train.lr=1e-3,1e-2", "train.epochs=2")
SLURM = (
    "hydra/launcher=submitit_slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
)

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
