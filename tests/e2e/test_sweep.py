"""Sweeps on the real CLI: members fan out, plot fans in, reruns reuse, a killed sweep resumes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.support import Cli, actions, env_for, handed_back, make_cli, spawn_cli
from tests.files import write_mnist
from tests.wandb_records import read_all

SWEEP = ("-m", "train.lr=1e-3,1e-2", "train.model=mlp,cnn", "train.epochs=2")
MEMBERS = [
    f"train.lr={lr},train.model={model}"  # train.epochs=2 is fixed: it names no member
    for lr in ("0.001", "0.01")
    for model in ("mlp", "cnn")
]
PLOT = "plot[train.lr=0.001|0.01,train.model=cnn|mlp]"


def _lock(workspace: Path) -> dict:
    return yaml.safe_load((workspace / "dvc_free_lock.yaml").read_text())["stages"]


def test_a_sweep_fans_out_to_members_and_plot_fans_in(cli: Cli, workspace: Path) -> None:
    before = len(read_all(workspace / "wandb"))
    result = cli("run", "plot", *SWEEP, "--json")
    # The launcher's lines (`#0 : +pipeline_member=0`) name an internal index: not shown.
    assert "pipeline_member" not in result.stderr and "Launching" not in result.stderr
    expected = {"prepare_data": "reuse"}
    expected |= {f"train[{m}]": "run" for m in MEMBERS}
    expected |= {f"evaluate[{m}]": "run" for m in MEMBERS}
    expected[PLOT] = "run"
    assert actions(result) == expected
    lock = _lock(workspace)
    assert set(expected) <= set(lock)
    # Four distinct models, each evaluated once; the fan-in uses all of them.
    models = {lock[f"train[{m}]"]["outputs"]["model"]["digest"] for m in MEMBERS}
    assert len(models) == 4
    plot_inputs = lock[PLOT]["inputs"]
    assert sorted(plot_inputs) == sorted(
        [f"evaluation@{m}" for m in MEMBERS] + [f"model@{m}" for m in MEMBERS]
    )
    for member in MEMBERS:
        assert plot_inputs[f"evaluation@{member}"] == {
            k: lock[f"evaluate[{member}]"]["outputs"]["evaluation"][k]
            for k in ("name", "version", "digest")
        }
    assert lock[PLOT]["metrics"]["members"] == 4
    # W&B: one run per member, and a fan-in run whose uses are all members' outputs.
    runs = read_all(workspace / "wandb")[before:]
    assert sorted(r.job_type for r in runs) == sorted(["train"] * 4 + ["evaluate"] * 4 + ["plot"])
    assert len({r.group for r in runs}) == 1
    (plot,) = [r for r in runs if r.job_type == "plot"]
    logged = {a["digest"] for r in runs if r.job_type in ("train", "evaluate") for a in r.logs}
    assert {u["digest"] for u in plot.uses} == logged
    assert len(plot.uses) == 8


def test_a_rerun_reuses_and_a_new_value_runs_only_new_members(cli: Cli, workspace: Path) -> None:
    cli("run", "plot", *SWEEP)
    assert cli("run", "plot", *SWEEP).stdout.endswith(
        "all 10 members of 4 stages are fresh; nothing to run\n"
    )
    assert "dry run: 0 of 10 members of 4 stages would run\n" in (
        cli("run", "plot", *SWEEP, "--dry-run").stdout
    )
    again = actions(cli("run", "plot", *SWEEP, "--json"))
    assert set(again.values()) == {"reuse"}
    # status and dag show the expanded graph of members.
    doc = json.loads(cli("status", *SWEEP, "--json").stdout)["stages"]
    assert sorted(doc) == sorted(again)
    assert {s["state"] for s in doc.values()} == {"fresh"}
    mermaid = cli("dag", *SWEEP, "--format", "mermaid").stdout
    assert f'["{PLOT.replace("|", "#124;")}<br/>fresh · plots:v1"]' in mermaid
    assert mermaid.count(" -->|evaluation| ") == 4
    wider = ("-m", "train.lr=1e-3,1e-2,1e-1", "train.model=mlp,cnn", "train.epochs=2")
    ran = sorted(k for k, a in actions(cli("run", "plot", *wider, "--json")).items() if a == "run")
    assert ran == sorted(
        [
            f"{s}[train.lr=0.1,train.model={m}]"
            for s in ("train", "evaluate")
            for m in ("mlp", "cnn")
        ]
        + ["plot[train.lr=0.001|0.01|0.1,train.model=cnn|mlp]"]
    )


def test_a_sweep_changes_neither_the_single_runs_nor_what_a_bare_name_means(
    cli: Cli, workspace: Path
) -> None:
    single = {k: v for k, v in _lock(workspace).items() if "[" not in k}
    cli("run", "plot", *SWEEP)
    assert {k: v for k, v in _lock(workspace).items() if "[" not in k} == single
    assert set(actions(cli("run", "--json")).values()) == {"reuse"}
    # A bare name is the pipeline's own pin; the members' pins are named in a note.
    bare = cli("lineage", "model")
    assert bare.stdout.startswith("model:v0  (model,")
    assert bare.stderr == (
        "note: dvc_free_lock.yaml also pins `model:v1`, `model:v2`, `model:v3`, `model:v4` "
        "for sweep members (name one to see it, e.g. `model:v1`)\n"
    )
    assert cli("lineage", "plots").stdout.startswith("plots:v0  (plots,")
    # `latest` keeps W&B's meaning, and each run is listed once, at its nearest place.
    latest = cli("lineage", "model:latest")
    assert latest.stdout.startswith("model:v4  (model,") and latest.stderr == ""
    runs = [line.split()[1] for line in latest.stdout.splitlines() if line.strip()[:5] == "run #"]
    assert len(runs) == len(set(runs)) == 4  # prepare_data, its train, evaluate and plot
    assert f" {PLOT}  (ok" in latest.stdout


def test_a_killed_sweep_resumes_with_only_the_unfinished_members(workspace: Path) -> None:
    slow = ("-m", "train.lr=1e-3,2e-3,3e-3", "train.epochs=20")
    process = spawn_cli(workspace, "run", "train", *slow, "--json", output=False)
    first = "train[train.lr=0.001]"
    # Kill once a member has finished: its job handed back its record, which the launching
    # process books in the index only once the wave ends; the next `run` books it instead.
    versions = workspace / ".pipeline" / "artifacts" / "model"
    deadline = time.monotonic() + 300
    while not handed_back(workspace, "result.json") and time.monotonic() < deadline:
        assert process.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (versions / "v3").exists()
    resumed = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "train", *slow, "--json"],
        cwd=workspace,
        env=env_for(workspace),
        capture_output=True,
        text=True,
        check=True,
    )
    steps = {s["stage"]: s for s in json.loads(resumed.stdout)["steps"]}
    assert steps[first]["action"] == "reuse"
    assert steps[first]["reasons"][-1] == (
        "same fingerprint ran before: outputs restored from the store"
    )
    assert steps["train[train.lr=0.003]"]["action"] == "run"
    assert _lock(workspace)[first]["outputs"]["model"]["version"] == "v1"


def _digests(workspace: Path) -> dict[str, str]:
    return {
        f"{key}:{name}": out["digest"]
        for key, entry in _lock(workspace).items()
        if "[" in key
        for name, out in entry["outputs"].items()
    }


def test_parallel_launchers_give_the_same_digests(ran_once: Path, tmp_path: Path) -> None:
    sweep = ("evaluate", "-m", "train.lr=1e-3,1e-2", "train.epochs=2")
    found = {}
    for name, launcher in {
        "basic": (),
        "joblib": ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
        "submitit": ("hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"),
    }.items():
        workspace = tmp_path / name
        shutil.copytree(ran_once, workspace)
        make_cli(workspace)("run", *sweep, *launcher)
        found[name] = _digests(workspace)
    assert len(found["basic"]) == 4  # two models, two evaluations
    assert found["joblib"] == found["basic"]
    assert found["submitit"] == found["basic"]
    assert sorted((tmp_path / "submitit" / "outputs" / "train").iterdir())  # submitit's folders


def test_one_model_evaluated_on_several_datasets(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    for seed, folder in enumerate(("MNIST", "FashionMNIST")):  # small files, real IDX format
        write_mnist(workspace / "data", train=80, test=20, folder=folder, seed=seed)
    cli = make_cli(workspace)
    cli("run", "train", "prepare_data.dataset=mnist", "train.epochs=1")
    result = cli("run", "plot", "-m", "evaluate.dataset=mnist,fashion_mnist", "--json")
    assert actions(result) == {
        "prepare_data": "reuse",
        "prepare_data[evaluate.dataset=mnist]": "reuse",  # the same config: prepared once
        "prepare_data[evaluate.dataset=fashion_mnist]": "run",
        "train": "reuse",
        "evaluate[evaluate.dataset=mnist]": "run",
        "evaluate[evaluate.dataset=fashion_mnist]": "run",
        "plot[evaluate.dataset=fashion_mnist|mnist]": "run",
    }
    lock = _lock(workspace)
    model = lock["train"]["outputs"]["model"]["digest"]
    for name in ("mnist", "fashion_mnist"):
        inputs = lock[f"evaluate[evaluate.dataset={name}]"]["inputs"]
        assert inputs["model"]["digest"] == model
        assert inputs["dataset"]["name"] == f"dataset-{name}"


PARALLEL = ("-m", "train.lr=1e-3,2e-3", "train.epochs=500", "hydra/launcher=joblib")


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid``, from /proc's parent links."""
    parents = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        children = [c for c, p in parents.items() if p == parent]
        found += children
        todo += children
    return found


def _command(pid: int) -> str | None:
    """A live process's command line; ``None`` once it is gone (or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    return text or None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_a_parallel_sweep_killed_leaves_no_process_behind(workspace: Path) -> None:
    """SIGKILL of `run -m ... hydra/launcher=joblib`: its loky workers and trackers end too."""
    process = spawn_cli(workspace, "run", "train", *PARALLEL, output=False)
    deadline = time.monotonic() + 300
    workers: list[int] = []
    while time.monotonic() < deadline:  # until both members are training in their workers
        assert process.poll() is None, "the sweep ended before it could be killed"
        workers = [p for p in _descendants(process.pid) if "loky" in (_command(p) or "")]
        if len(workers) >= 2 and len(handed_back(workspace, "started.json")) >= 2:
            break
        time.sleep(0.2)
    below = _descendants(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_command(p) for p in below):
        time.sleep(0.2)
    left = {p: _command(p) for p in below if _command(p)}
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert len(workers) >= 2
    assert left == {}
