"""The lineage W&B's server sees: sync, online runs, pull and the team run cache, proven
against a local server that speaks W&B's protocol (`tests/wandb_server.py`)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.core.errors import RemoteError
from pipeline.execution import sync
from pipeline.state.store import Store
from tests.e2e.support import FAST, Cli, make_cli, snapshot
from tests.wandb_server import WandbServer

# Every W&B request is bounded; tests take a short bound so that a hanging server costs
# seconds. The bound a command may take then follows from it (README: W&B section).
TIMEOUT = 4
BOUND_S = 60


@pytest.fixture(params=[True, False], ids=["merge-aliases", "ignore-aliases"])
def server(request: pytest.FixtureRequest) -> Iterator[WandbServer]:
    """A W&B server under each model of what the real one does with aliases on a dedup hit
    (unknown here), and refusing calls that name no entity."""
    with WandbServer(merge_aliases_on_dedup=request.param, empty_entity="refuse") as running:
        yield running


def _online_cli(workspace: Path, server: WandbServer) -> Cli:
    plain = make_cli(workspace)
    env = {**server.env(), "PIPELINE_WANDB_TIMEOUT": str(TIMEOUT)}

    def cli(*args: str, **kwargs: Any) -> Any:
        return plain(*args, env={**env, **kwargs.pop("env", {})}, **kwargs)

    return cli


def differences(workspace: Path, server: WandbServer) -> list[str]:
    """Every way the server's lineage differs from the store's; empty when they agree."""
    store = Store(workspace)
    problems = []
    theirs = {(v.name, v.version): v for v in server.versions()}
    by_digest = {(v.name, v.digest): v for v in server.versions()}
    ours = store.all_versions()
    runs = [r for r in store.runs.tracked() if r["tracking"].get("mode") in ("online", "offline")]
    uploaded = set(server.runs())
    # Versions made by runs that reached W&B must be there, with the store's numbers.
    made = sync.creators(runs)
    wandb_id = {r["run"]: r["tracking"]["id"] for r in runs}
    for version in ours:
        key = (version["name"], version["version"])
        maker = made.get((version["name"], version["digest"]))
        if maker is None or wandb_id[maker] not in uploaded:
            continue
        found = theirs.get(key)
        if found is None or found.digest != version["digest"]:
            problems.append(f"{key}: server has {found.digest if found else 'nothing'}")
            continue
        if found.created_by != wandb_id[maker]:
            problems.append(f"{key}: created by {found.created_by}, not {wandb_id[maker]}")
    for name in {v["name"] for v in ours}:
        latest = [v.version for v in server.versions(name) if "latest" in v.aliases]
        local = store.resolve(name, "latest")
        if latest and (local is None or latest != [local.version]):
            problems.append(f"{name}: server latest {latest}, store latest {local}")
    for run in runs:
        run_id = run["tracking"]["id"]
        if run_id not in uploaded:
            continue
        for pin in run["inputs"].values():
            found = by_digest.get((pin["name"], pin["digest"]))
            if found is None or run_id not in found.used_by:
                problems.append(f"run {run_id} ({run['stage']}) does not use {pin['name']}")
        for pin in run["outputs"].values():
            found = by_digest.get((pin["name"], pin["digest"]))
            if found is None or run_id not in found.logged_by:
                problems.append(f"run {run_id} ({run['stage']}) did not log {pin['name']}")
    entities = {v.entity for v in server.versions()} | {r.entity for r in server.runs().values()}
    if entities - {server.default_entity}:
        problems.append(f"entities {sorted(entities)}")
    store.close()
    return problems


def _scenario(cli: Cli) -> None:
    """The issue's workspace: 8 runs, a plot rerun, a forced re-log of old content."""
    cli("run", *FAST)
    cli("run", "evaluate", "train.lr=0.01")
    cli("run", "plot")
    cli("run", "evaluate", "--use", "model:v0", "--force")


@pytest.fixture
def one_server() -> Iterator[WandbServer]:
    """One model of the server (aliases merged on a dedup hit, the harsher) where one is enough."""
    with WandbServer(empty_entity="refuse") as running:
        yield running


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace that ran the scenario offline, once for the module."""
    workspace = tmp_path_factory.mktemp("scenario") / "ws"
    workspace.mkdir()
    _scenario(make_cli(workspace))
    return workspace


def _copy(workspace: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "ws"
    shutil.copytree(workspace, copy, symlinks=True)
    # W&B's staged files live in the data folder beside the workspace; runs must find them.
    data = workspace.parent / "wandb-data"
    if data.exists() and not (tmp_path / "wandb-data").exists():
        shutil.copytree(data, tmp_path / "wandb-data")
    return copy


def test_sync_reproduces_the_stores_graph_on_the_server(
    scenario: Path, tmp_path: Path, server: WandbServer
) -> None:
    workspace = _copy(scenario, tmp_path)
    cli = _online_cli(workspace, server)
    cli("sync")
    assert differences(workspace, server) == []
    store = Store(workspace)
    assert len(store.runs.tracked()) == 8
    # plots: two versions, numbered as in the store; `latest` is the newer one.
    assert [v.version for v in server.versions("plots")] == store.versions("plots")
    # Uses never name an alias; a log of content that was already a version names none.
    sent = [c.variables for c in server.calls if c.op == "CreateArtifact"]
    assert sent
    uses = [v for v in sent if not v.get("runName")]
    assert all(not v.get("aliases") for v in uses)
    # A second sync sends nothing.
    server.clear_calls()
    assert cli("sync").stdout == "nothing to sync: every W&B run is uploaded\n"
    assert server.calls == []


def test_syncing_in_the_wrong_order_is_caught(
    scenario: Path, tmp_path: Path, one_server: WandbServer
) -> None:
    server = one_server
    workspace = _copy(scenario, tmp_path)
    store = Store(workspace)
    runs = list(reversed(sync.pending(store)))
    env = {**server.env(), "PIPELINE_WANDB_TIMEOUT": str(TIMEOUT)}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.setenv("HOME", str(tmp_path))
        patch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
        sync.sync(store, runs, lambda: server.default_entity)
    assert differences(workspace, server) != []


def test_a_sweep_fans_out_and_in_on_the_server(tmp_path: Path, server: WandbServer) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    cli = _online_cli(workspace, server)
    cli("run", "plot", "-m", "train.lr=0.003,0.01", *FAST)
    # The default lr is the first member's: its model is restored from the store, and the
    # evaluate and plot runs that follow use that version (no new train run).
    cli("run", *FAST)
    cli("sync")
    assert differences(workspace, server) == []
    # Fan-out: two models from one dataset; fan-in: one plot run used both.
    models = server.versions("model")
    assert len(models) == 2
    (dataset,) = server.versions("dataset-digits")
    assert all(v.created_by in dataset.used_by for v in models)
    assert [r.job_type for r in server.runs().values()].count("train") == 2
    plots = [r for r in server.runs().values() if r.job_type == "plot"]
    assert len(plots) == 2
    assert sum(all(p.id in v.used_by for v in models) for p in plots) == 1


def test_online_runs_give_the_graph_that_offline_and_sync_give(
    scenario: Path, tmp_path: Path
) -> None:
    with WandbServer(empty_entity="refuse") as online, WandbServer(empty_entity="refuse") as later:
        workspace = tmp_path / "online"
        workspace.mkdir()
        cli = _online_cli(workspace, online)
        _scenario(lambda *args: cli(*args, "wandb.mode=online"))
        assert differences(workspace, online) == []
        synced = _copy(scenario, tmp_path)
        _online_cli(synced, later)("sync")

        def shape(server: WandbServer) -> set[tuple[Any, ...]]:
            runs = server.runs()
            return {
                (
                    v.name,
                    v.version,
                    v.digest,
                    runs[v.created_by].job_type if v.created_by else None,
                    tuple(sorted(runs[r].job_type for r in v.used_by)),
                    tuple(sorted(runs[r].job_type for r in v.logged_by)),
                    "latest" in v.aliases,
                )
                for v in server.versions()
            }

        assert shape(online) == shape(later)


@pytest.mark.parametrize("fault", ["hang", "error", "refused-key"])
def test_when_wandb_fails_the_run_is_kept_offline_within_the_bound(
    tmp_path: Path, fault: str
) -> None:
    with WandbServer() as server:
        if fault == "hang":
            server.hang = True
        elif fault == "error":
            server.fail_status = 500
        else:
            server.refuse_all_keys = True
        workspace = tmp_path / "ws"
        workspace.mkdir()
        cli = _online_cli(workspace, server)
        began = time.monotonic()
        result = cli("run", *FAST, "wandb.mode=online")
        took = time.monotonic() - began
        server.hang = False
    assert took < BOUND_S, f"{fault}: the run took {took:.0f} s"
    warned = [line for line in result.stderr.splitlines() if "W&B online is not available" in line]
    assert len(warned) == 1, result.stderr
    doc = json.loads(make_cli(workspace)("status", "--json").stdout)["stages"]
    assert all(s["state"] == "fresh" for s in doc.values())
    assert {s["wandb"]["mode"] for s in doc.values()} == {"offline"}


def test_sync_against_a_hanging_server_stops_within_the_bound(
    scenario: Path, tmp_path: Path
) -> None:
    workspace = _copy(scenario, tmp_path)
    with WandbServer() as server:
        server.hang = True
        began = time.monotonic()
        result = _online_cli(workspace, server)("sync", check=False)
        took = time.monotonic() - began
        server.hang = False
    assert took < BOUND_S
    assert result.returncode == 1
    assert result.stderr.startswith("error: W&B did not answer within")
    assert len(result.stderr.strip().splitlines()) == 1
    assert len(sync.pending(Store(workspace))) == 8


def _fresh_clone(workspace: Path, tmp_path: Path, name: str) -> Path:
    clone = tmp_path / name
    clone.mkdir()
    shutil.copy(workspace / "dvc_free_lock.yaml", clone / "dvc_free_lock.yaml")
    return clone


def test_pull_on_a_fresh_clone_makes_everything_fresh(
    workspace: Path, tmp_path: Path, one_server: WandbServer
) -> None:
    source = workspace  # the pipeline ran once there, offline
    _online_cli(source, one_server)("sync")
    clone = _fresh_clone(source, tmp_path, "clone")
    cli = _online_cli(clone, one_server)
    pulled = cli("pull")
    assert pulled.stdout.endswith("pulled 4 of 4 versions the lock pins; the rest were here\n")
    doc = json.loads(cli("status", "--json").stdout)["stages"]
    assert {s["state"] for s in doc.values()} == {"fresh"}
    assert cli("run", "--json").stdout.count('"action": "reuse"') == 4
    assert cli("lock", "verify").returncode == 0
    assert (clone / "dvc_free_lock.yaml").read_bytes() == (
        source / "dvc_free_lock.yaml"
    ).read_bytes()
    # Pulled versions keep the numbers the lock pins (model v0 is the one it pins here).
    assert "already here" in cli("pull").stdout


def test_pull_names_a_version_the_server_lacks(
    scenario: Path, tmp_path: Path, one_server: WandbServer
) -> None:
    clone = _fresh_clone(scenario, tmp_path, "clone")
    result = _online_cli(clone, one_server)("pull", "prepare_data", check=False)
    assert result.returncode == 1
    line = result.stderr.strip()
    assert line.startswith("error: W&B has no `dataset-digits:v0` (digest ")
    assert "in `lineage-team/lineage`, pinned by `prepare_data`" in line
    assert line.endswith("recompute it with `python -m pipeline run prepare_data`")
    assert "\n" not in line


def test_a_blank_wandb_mode_is_no_choice_for_pull_either(
    scenario: Path, tmp_path: Path, one_server: WandbServer
) -> None:
    clone = _fresh_clone(scenario, tmp_path, "clone")
    cli = _online_cli(clone, one_server)
    result = cli("pull", "prepare_data", check=False, env={"WANDB_MODE": ""})
    assert result.returncode == 1  # the server lacks the version: its one line, as above
    assert result.stderr.startswith("error: W&B has no `dataset-digits:v0` (digest ")


def test_pull_refuses_files_that_do_not_hash_to_the_pinned_digest(
    workspace: Path, tmp_path: Path, one_server: WandbServer
) -> None:
    _online_cli(workspace, one_server)("sync")
    (dataset,) = one_server.versions("dataset-digits")
    served = next(iter(dataset.files.values()))
    served.write_bytes(served.read_bytes()[:-1] + b"!")  # the server's copy is damaged
    clone = _fresh_clone(workspace, tmp_path, "clone")
    before = snapshot(clone)
    result = _online_cli(clone, one_server)("pull", "prepare_data", check=False)
    assert result.returncode == 1
    line = result.stderr.strip()
    assert line.startswith("error: pulling `dataset-digits:v0` from W&B: artifact ")
    assert "refused, nothing was stored" in line and "\n" not in line
    after = snapshot(clone)
    assert not [p for p in after if p.startswith(".pipeline/artifacts/")]
    assert {p: v for p, v in after.items() if p in before} == before


def test_pull_finds_a_version_by_its_digest_when_wandb_numbered_it_otherwise(
    workspace: Path, tmp_path: Path, one_server: WandbServer
) -> None:
    _online_cli(workspace, one_server)("sync")
    clone = _fresh_clone(workspace, tmp_path, "clone")
    lock = clone / "dvc_free_lock.yaml"
    doc = yaml.safe_load(lock.read_text())
    doc["stages"]["prepare_data"]["outputs"]["dataset"]["version"] = "v3"
    lock.write_text(yaml.safe_dump(doc, sort_keys=True))
    cli = _online_cli(clone, one_server)
    assert "dataset-digits v3" in cli("pull", "prepare_data").stdout
    assert json.loads(cli("status", "prepare_data", "--json").stdout)["stages"] == {
        "prepare_data": {"reasons": [], "state": "fresh", "wandb": None}
    }


def test_a_team_shares_a_run_cache_on_wandb(tmp_path: Path, one_server: WandbServer) -> None:
    server = one_server
    first = tmp_path / "first"
    first.mkdir()
    _online_cli(first, server)("run", *FAST, "wandb.mode=online")
    second = tmp_path / "second"
    second.mkdir()
    cli = _online_cli(second, server)
    done = json.loads(cli("run", *FAST, "--pull", "--json").stdout)["steps"]
    assert [s["action"] for s in done] == ["reuse"] * 4
    for step in done:
        (reason,) = step["reasons"][-1:]
        assert reason.startswith("same fingerprint ran on W&B (run ")
        assert reason.endswith("): outputs pulled")
    assert not (second / "wandb").exists() or not list((second / "wandb").glob("*run-*"))
    assert (second / "dvc_free_lock.yaml").read_bytes() == (
        first / "dvc_free_lock.yaml"
    ).read_bytes()
    assert cli("lock", "verify").returncode == 0


def test_an_artifact_the_server_refused_during_wandb_sync_is_not_taken_as_uploaded(
    scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `wandb sync` exits 0 when the server refuses an artifact (here: no entity named),
    # saying so only in its debug log; sync reads that log.
    workspace = _copy(scenario, tmp_path)
    with WandbServer(empty_entity="refuse") as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
        monkeypatch.chdir(workspace)
        first = sync.pending(Store(workspace))[0]
        with pytest.raises(RemoteError, match=r"failed .*entityName is required"):
            sync.wandb_sync(first)
    assert server.versions() == []
