"""Each stage run is a W&B run whose uses and logs chain into the lineage, read offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.e2e.support import TRAIN_FAILS, Cli, make_cli
from tests.wandb_records import RunRecords, read_all

STAGES = ["prepare_data", "train", "evaluate", "plot"]


def _by_stage(runs: list[RunRecords]) -> dict[str, list[RunRecords]]:
    found: dict[str, list[RunRecords]] = {}
    for run in runs:
        found.setdefault(run.job_type, []).append(run)
    return found


def _lock(workspace: Path) -> dict:
    return yaml.safe_load((workspace / "dvc_free_lock.yaml").read_text())["stages"]


def test_a_full_run_records_the_whole_lineage(cli: Cli, workspace: Path) -> None:
    runs = read_all(workspace / "wandb")
    by_stage = _by_stage(runs)
    assert sorted(by_stage) == sorted(STAGES)
    assert all(len(v) == 1 for v in by_stage.values())
    assert len({r.group for r in runs}) == 1
    assert runs[0].group.startswith("pipeline-")
    lock = _lock(workspace)
    logged = {s: {(a["name"], a["digest"]) for a in r[0].logs} for s, r in by_stage.items()}
    producer = {"dataset": "prepare_data", "model": "train", "evaluation": "evaluate"}
    for stage, (run,) in by_stage.items():
        entry = lock[stage]
        assert run.exit_code == 0
        assert run.name == f"{stage}-{entry['fingerprint'][:8]}"
        assert run.config == entry["config"]
        assert {k: run.summary[k] for k in entry["metrics"]} == entry["metrics"]
        # Every use points at a digest its producer's run logged, under the same name.
        assert len(run.uses) == len(entry["inputs"])
        for logical, pin in entry["inputs"].items():
            assert (pin["name"], pin["digest"]) in logged[producer[logical]]
            assert {"name": pin["name"], "digest": pin["digest"]} in [
                {"name": u["name"], "digest": u["digest"]} for u in run.uses
            ]
        # Every output in the lock is logged with the lock's digest and our metadata.
        for out in entry["outputs"].values():
            (log,) = [a for a in run.logs if a["name"] == out["name"]]
            assert (log["digest"], log["type"]) == (out["digest"], out["type"])
            assert log["metadata"]["fingerprint"] == entry["fingerprint"]
            assert log["metadata"]["local_version"] == out["version"]
            assert log["metadata"]["config"] == entry["config"]
            assert len(log["paths"]) == out["files"]
    history = by_stage["plot"][0].history
    for figure in ("learning_curves", "confusion_matrix", "per_class_accuracy"):
        assert history[f"plots/{figure}/_type"] == "image-file"


def test_a_rerun_after_a_train_override_adds_runs_on_the_same_dataset(
    cli: Cli, workspace: Path
) -> None:
    dataset = _lock(workspace)["prepare_data"]["outputs"]["dataset"]["digest"]
    cli("run", "train.lr=0.01")
    by_stage = _by_stage(read_all(workspace / "wandb"))
    # prepare_data was reused from the store: no new run for it.
    assert {s: len(v) for s, v in by_stage.items()} == {
        "prepare_data": 1,
        "train": 2,
        "evaluate": 2,
        "plot": 2,
    }
    new_train = [r for r in by_stage["train"] if r.config["lr"] == 0.01]
    (train,) = new_train
    assert [u["digest"] for u in train.uses] == [dataset]
    lock = _lock(workspace)
    new_eval = [r for r in by_stage["evaluate"] if r.group == train.group]
    assert len(new_eval) == 1
    used = {u["name"]: u["digest"] for u in new_eval[0].uses}
    assert used == {
        "dataset-digits": dataset,
        "model": lock["train"]["outputs"]["model"]["digest"],
    }


def test_status_shows_each_stages_wandb_run(cli: Cli, workspace: Path) -> None:
    doc = json.loads(cli("status", "--json").stdout)["stages"]
    runs = {r.job_type: r for r in read_all(workspace / "wandb")}
    for stage in STAGES:
        info = doc[stage]["wandb"]
        assert info["id"] == runs[stage].run_id
        assert info["mode"] == "offline"
        assert workspace / info["dir"] == runs[stage].path.parent
    assert re.search(
        r"^train +fresh .*W&B offline run \w+ \(not synced\)", cli("status").stdout, re.M
    )
    assert "dvc_free_lock" not in json.dumps(doc)
    assert runs["train"].run_id not in (workspace / "dvc_free_lock.yaml").read_text()


def test_a_failed_stage_ends_its_run_with_exit_1_and_logs_nothing(
    cli: Cli, workspace: Path
) -> None:
    before = len(read_all(workspace / "wandb"))
    result = cli("run", *TRAIN_FAILS, check=False)
    assert result.returncode == 1
    assert "error: stage `train` failed: RuntimeError" in result.stderr
    runs = read_all(workspace / "wandb")[before:]
    assert [r.job_type for r in runs] == ["train"]  # evaluate and plot did not run
    (train,) = runs
    assert train.exit_code == 1
    assert train.logs == []
    assert len(train.uses) == 1


def test_wandb_disabled_records_nothing(cli: Cli, workspace: Path) -> None:
    before = len(read_all(workspace / "wandb"))
    cli("run", "train.lr=0.02", "wandb.mode=disabled")
    assert len(read_all(workspace / "wandb")) == before
    assert json.loads(cli("status", "--json").stdout)["stages"]["train"]["wandb"] is None


def test_a_failing_callback_cannot_pass_silently(cli: Cli, workspace: Path) -> None:
    # wandb.init refuses this run id: the callback raises, Hydra turns that into a
    # warning, and the test environment makes warnings errors.
    result = cli("run", "train.lr=0.02", check=False, env={"WANDB_RUN_ID": "bad/id"})
    assert result.returncode == 1
    assert "Callback WandbCallback.on_job_start raised" in result.stderr


def test_sync_orders_producers_first_and_needs_credentials(cli: Cli, workspace: Path) -> None:
    cli("run", "train.lr=0.01")
    dry = cli("sync", "--dry-run").stdout
    lines = re.findall(r"^\d+\. (\w+): W&B run (\w+) ", dry, re.M)
    assert [s for s, _ in lines].count("train") == 2
    assert len(lines) == 7
    position = {run_id: i for i, (_, run_id) in enumerate(lines)}
    runs = read_all(workspace / "wandb")
    logged_by = {a["digest"]: r.run_id for r in runs for a in r.logs}
    for run in runs:
        for use in run.uses:
            assert position[logged_by[use["digest"]]] < position[run.run_id]
    refused = cli("sync", check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "error: no W&B credentials: run `wandb login` or set WANDB_API_KEY, "
        "then rerun `python -m pipeline sync`"
    )


def test_a_stage_run_alone_as_a_hydra_app_is_tracked_too(tmp_path: Path) -> None:
    workspace = tmp_path / "alone"
    workspace.mkdir()
    cli = make_cli(workspace)
    cli("run", "prepare_data")
    dataset = next((workspace / ".pipeline" / "artifacts" / "dataset-digits").iterdir())
    cli("epochs=2", f"dataset={dataset}", f"out={workspace / 'o'}", module="stages.train")
    (run,) = [r for r in read_all(workspace / "wandb") if r.job_type == "train"]
    assert [u["name"] for u in run.uses] == ["dataset-digits"]
    assert [a["name"] for a in run.logs] == ["model"]


def test_training_progress_is_a_line_per_epoch_in_the_terminal_the_log_and_wandb(
    cli: Cli, workspace: Path
) -> None:
    """`pipeline.spec.report`: the terminal and Hydra's log get each epoch, W&B its history."""
    before = len(read_all(workspace / "wandb"))
    ran = cli("run", "train", "train.epochs=3", "train.lr=0.002")
    lines = [x.split(" - ", 1)[1] for x in ran.stderr.splitlines() if "train: epoch " in x]
    assert [x.split()[:3] for x in lines] == [["train:", "epoch", str(e)] for e in (1, 2, 3)]
    assert all(" val_accuracy " in x and " seconds " in x for x in lines), lines
    (train,) = [r for r in read_all(workspace / "wandb")[before:] if r.job_type == "train"]
    assert [s["epoch"] for s in train.steps if "epoch" in s] == [1, 2, 3]
    model = workspace / ".pipeline" / "artifacts" / "model"
    done = [json.loads((v / "history.json").read_text()) for v in model.glob("v*")]
    epochs = next(d["epochs"] for d in done if len(d["epochs"]) == 3)
    steps = [s for s in train.steps if "epoch" in s]
    assert [s["val_accuracy"] for s in steps] == [e["val_accuracy"] for e in epochs]
    logs = [p for p in (workspace / "outputs").rglob("train.log") if "epoch 3" in p.read_text()]
    assert logs, "Hydra's log of the train job holds the epoch lines"
