"""The real CLI on the real stages: runs, reuse, sticky overrides, reasons, lock, exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import yaml

from pipeline.core import lockfile, paths
from tests.e2e.support import FAST, TRAIN_FAILS, Cli, actions, make_cli, status

ALL = ("prepare_data", "train", "evaluate", "plot")


def _lock(workspace: Path) -> dict:
    return yaml.safe_load((workspace / "dvc_free_lock.yaml").read_text())


def test_the_first_run_pins_every_stage_and_the_second_reuses_all(
    cli: Cli, workspace: Path
) -> None:
    lock = _lock(workspace)
    assert lock["schema"] == 1
    assert sorted(lock["stages"]) == sorted(ALL)
    train = lock["stages"]["train"]
    assert train["overrides"] == ["epochs=2"]
    assert train["config"]["epochs"] == 2
    assert train["inputs"]["dataset"]["name"] == "dataset-digits"
    assert train["outputs"]["model"]["version"] == "v0"
    assert train["outputs"]["model"]["files"] == 3
    assert set(train["code"]["files"]) >= {"stages/train.py", "stages/models.py"}
    assert "stages/plot.py" not in train["code"]["files"]
    text = (workspace / "dvc_free_lock.yaml").read_text()
    assert str(workspace) not in text
    assert lock["stages"]["evaluate"]["metrics"]["accuracy"] > 0.5

    again = cli("run", "--json")
    assert actions(again) == dict.fromkeys(ALL, "reuse")
    human = cli("run")
    assert "all 4 stages are fresh; nothing to run" in human.stdout
    assert (workspace / "dvc_free_lock.yaml").read_text() == text


def test_a_train_override_reruns_train_evaluate_and_plot(cli: Cli) -> None:
    result = cli("run", "train.lr=0.01", "--json")
    assert actions(result) == {
        "prepare_data": "reuse",
        "train": "run",
        "evaluate": "run",
        "plot": "run",
    }


def test_train_alone_leaves_evaluate_and_plot_stale_with_reasons(cli: Cli, workspace: Path) -> None:
    result = cli("run", "train", "train.lr=0.01", "train.epochs=3", "--json")
    assert actions(result) == {"prepare_data": "reuse", "train": "run"}
    doc = status(cli)
    assert doc["prepare_data"] == {"state": "fresh", "reasons": []}
    assert doc["train"]["state"] == "fresh"
    assert doc["evaluate"] == {"state": "stale", "reasons": ["input model changed: v0 -> v1"]}
    assert doc["plot"]["state"] == "stale"
    assert "input model changed: v0 -> v1" in doc["plot"]["reasons"]
    human = cli("status").stdout
    assert re.search(r"^evaluate +stale\n +- input model changed: v0 -> v1$", human, re.M)

    # Overrides stick: evaluate now evaluates the lr=0.01 model without retraining.
    follow = cli("run", "evaluate", "--json")
    assert actions(follow) == {"prepare_data": "reuse", "train": "reuse", "evaluate": "run"}
    lock = _lock(workspace)["stages"]
    assert lock["train"]["overrides"] == ["epochs=3", "lr=0.01"]
    assert lock["evaluate"]["inputs"]["model"]["version"] == "v1"


def test_status_says_what_config_changed(cli: Cli) -> None:
    cli("run", "train", "train.lr=0.01")
    cli("run", "train", "train.lr=0.001", "--dry-run")
    # A dry run records nothing: the lock still says lr=0.01.
    dry = cli("run", "train", "train.lr=0.001", "--dry-run").stdout
    assert "train: run (config changed: train.lr 0.01 -> 0.001)" in dry
    assert "dry run: 1 of 2 stages would run" in dry


def test_going_back_to_a_config_that_ran_trains_nothing(cli: Cli, workspace: Path) -> None:
    before = _lock(workspace)["stages"]
    cli("run", "evaluate", "train.lr=0.01")
    back = cli("run", "evaluate", "train.lr=0.003", "--json")
    assert actions(back) == {"prepare_data": "reuse", "train": "reuse", "evaluate": "reuse"}
    after = _lock(workspace)["stages"]
    assert after["train"]["outputs"] == before["train"]["outputs"]
    assert after["evaluate"]["outputs"] == before["evaluate"]["outputs"]


def test_reset_drops_a_stages_overrides(cli: Cli, workspace: Path) -> None:
    cli("run", "train", "train.lr=0.01")
    result = cli("run", "train", "--reset", "train", "--dry-run")
    assert re.search(r"config changed: train.epochs 2 -> [0-9]+;", result.stdout)
    assert "config changed: train.lr 0.01 -> 0.003" in result.stdout
    assert _lock(workspace)["stages"]["train"]["overrides"] == ["epochs=2", "lr=0.01"]


def test_a_prepare_data_override_reruns_all_four(cli: Cli) -> None:
    result = cli("run", "prepare_data.seed=1", "--json")
    assert actions(result) == dict.fromkeys(ALL, "run")


def test_only_runs_exactly_the_stage_against_the_lock(cli: Cli, workspace: Path) -> None:
    cli("run", "train", "train.lr=0.01")
    result = cli("run", "evaluate", "--only", "--json")
    assert actions(result) == {"prepare_data": "pin", "train": "pin", "evaluate": "run"}
    assert _lock(workspace)["stages"]["evaluate"]["inputs"]["model"]["version"] == "v1"


def test_force_reruns_a_fresh_stage_and_use_pins_a_version(cli: Cli, workspace: Path) -> None:
    forced = cli("run", "evaluate", "--force", "--json")
    assert actions(forced)["evaluate"] == "run"
    cli("run", "train", "train.lr=0.01")
    pinned = cli("run", "evaluate", "--use", "model:v0", "--use", "dataset-digits:latest", "--json")
    assert actions(pinned) == {"prepare_data": "pin", "train": "pin", "evaluate": "reuse"}
    assert _lock(workspace)["stages"]["evaluate"]["inputs"]["model"]["version"] == "v0"


def test_an_edit_to_a_stage_marks_it_and_downstream_stale(project_copy: Path) -> None:
    cli = make_cli(project_copy)
    cli("run", *FAST)
    source = project_copy / "stages" / "train.py"
    source.write_text(source.read_text() + "\n# an edit\n")
    doc = status(cli)
    assert doc["prepare_data"]["state"] == "fresh"
    assert doc["train"] == {"state": "stale", "reasons": ["code changed: stages/train.py"]}
    assert doc["evaluate"]["state"] == "stale"
    assert "input model is rebuilt by `train` first" in doc["evaluate"]["reasons"]
    assert doc["plot"]["state"] == "stale"
    # An unrelated file changes nothing.
    (project_copy / "stages" / "notes.py").write_text("X = 1\n")
    source.write_text(source.read_text().replace("\n# an edit\n", ""))
    assert {s["state"] for s in status(cli).values()} == {"fresh"}
    # What runs is what a dry run said: train, then the others only if its model changed
    # (a comment changes no bit of it).
    source.write_text(source.read_text() + "\n# an edit\n")
    dry = cli("run", "--dry-run").stdout.splitlines()[-1]
    assert dry == "dry run: 1 of 4 stages would run; 2 more if what they use comes out changed"
    ran = actions(cli("run", "--json"))
    assert ran == {"prepare_data": "reuse", "train": "run", "evaluate": "reuse", "plot": "reuse"}


def test_a_new_stage_is_one_module_and_one_line(project_copy: Path) -> None:
    (project_copy / "stages" / "export.py").write_text(EXPORT_STAGE)
    init = project_copy / "stages" / "__init__.py"
    init.write_text(init.read_text().replace('    "plot",\n', '    "plot",\n    "export",\n'))
    cli = make_cli(project_copy)
    cli("run", *FAST)
    result = cli("run", "export", "--json")
    assert actions(result) == {"prepare_data": "reuse", "train": "reuse", "export": "reuse"}
    doc = status(cli)
    assert doc["export"] == {"state": "fresh", "reasons": []}
    lock = yaml.safe_load((project_copy / "dvc_free_lock.yaml").read_text())["stages"]
    assert lock["export"]["outputs"]["onnx_like"]["name"] == "onnx_like"
    assert lock["export"]["inputs"]["model"] == {
        k: lock["train"]["outputs"]["model"][k] for k in ("name", "version", "digest")
    }
    assert lock["export"]["metrics"] == {"tensors": 8}


EXPORT_STAGE = '''
"""A researcher's extra stage: list the model's tensors."""

from __future__ import annotations

import json
from pathlib import Path

from hydra_zen import builds

from pipeline.spec import Output, StageSpec


def export(model: Path, out: Path, indent: int = 2) -> dict[str, int]:
    import torch

    state = torch.load(model / "state_dict.pt", weights_only=True)
    (out / "onnx_like").mkdir(parents=True)
    shapes = {k: list(v.shape) for k, v in state.items() if k.endswith(("weight", "bias"))}
    (out / "onnx_like" / "shapes.json").write_text(json.dumps(shapes, indent=indent))
    return {"tensors": len(shapes)}


SPEC = StageSpec(
    name="export",
    task=export,
    config=builds(export, populate_full_signature=True),
    uses=("model",),
    logs=(Output("onnx_like", "export"),),
)
'''


def test_a_failing_stage_exits_1_and_keeps_the_lock(cli: Cli, workspace: Path) -> None:
    before = (workspace / "dvc_free_lock.yaml").read_text()
    versions = sorted(os.listdir(workspace / ".pipeline" / "artifacts"))
    result = cli("run", *TRAIN_FAILS, check=False)
    assert result.returncode == 1
    assert "evaluate" not in result.stdout  # downstream stages do not run
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: stage `train` failed: RuntimeError: Given input size: ")
    assert last.endswith(
        "Output size is too small; after fixing it, resume with "
        "`python -m pipeline run train.model=squeezenet1_0 train.model.min_size=1`"
    )
    assert (workspace / "dvc_free_lock.yaml").read_text() == before
    assert sorted(os.listdir(workspace / ".pipeline" / "artifacts")) == versions
    assert os.listdir(workspace / ".pipeline" / "tmp") == []


def test_bad_input_exits_2_with_one_line(cli: Cli, workspace: Path) -> None:
    cases = {
        ("run", "trian"): "error: unknown stage `trian`; did you mean `train`?",
        ("run", "train.lrr=1"): "error: unknown config key `train.lrr`; did you mean `train.lr`?",
        ("run", "train", "train.model=nope"): "error: unknown option `nope` for `train.model`",
        ("run", "--use", "model"): "error: `--use model` should be NAME:VERSION",
        ("run", "--use", "modle:v0"): "error: `--use modle:v0`: no artifact `modle`; did you mean",
        ("run", "--use", "model:v7"): "error: `--use model:v7`: the store has no version `v7`",
        ("status", "nope"): "error: unknown stage `nope`",
        ("run", "wandb.project=a/b"): "error: `wandb.project=a/b`: W&B names cannot contain /",
        ("run", "wandb.mode=loud"): "error: `wandb.mode=loud`: the mode is one of online,",
        ("run", "wandb.team=x"): "error: `wandb.team=x`: W&B options are wandb.project=VALUE",
        ("run", "hydra.job.chdir=true"): "error: `hydra.job.chdir=true`: of Hydra's own settings",
        ("run", "train", "--force", "hydra/launcher=nope"): "error: cannot use hydra/launcher=nope",
    }
    for args, message in cases.items():
        result = cli(*args, check=False)
        assert result.returncode == 2, args
        assert result.stderr.startswith(message), (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr


def test_a_malformed_lock_is_bad_input_naming_the_line(cli: Cli, workspace: Path) -> None:
    path = workspace / "dvc_free_lock.yaml"
    lines = path.read_text().splitlines()
    where = next(i for i, line in enumerate(lines) if line.strip().startswith("size:"))
    lines[where] = lines[where].split(":")[0] + ": lots"
    path.write_text("\n".join(lines) + "\n")
    result = cli("status", check=False)
    assert result.returncode == 2
    assert f"dvc_free_lock.yaml:{where + 1}`" in result.stderr
    assert "should be an integer" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_commands_that_run_nothing_import_neither_torch_nor_wandb(cli: Cli) -> None:
    for args in (("status",), ("run",), ("run", "train.lr=0.5", "--dry-run")):
        result = cli(*args, python=("-X", "importtime"))
        imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
        assert "pipeline.cli.main" in imported, args  # the check itself sees imports
        assert not imported & {"torch", "torchvision", "wandb", "matplotlib"}, args


def test_a_repeated_no_op_answers_from_the_memo_until_something_changes(
    cli: Cli, workspace: Path
) -> None:
    def imported(result: subprocess.CompletedProcess[str]) -> set[str]:
        return {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}

    answers = [cli("status").stdout for _ in range(2)]  # the copy re-hashes once, then settles
    fast = cli("status", python=("-X", "importtime"))
    assert fast.stdout == answers[0] == answers[1]
    assert "pipeline.state.memo" in imported(fast)
    assert not imported(fast) & {"hydra", "networkx", "torch", "pipeline.execution.runner"}
    os.utime(workspace / "dvc_free_lock.yaml")  # a new mtime, the same bytes: still known
    touched = cli("status", python=("-X", "importtime"))
    assert touched.stdout == answers[0] and "hydra" not in imported(touched)
    with (workspace / "dvc_free_lock.yaml").open("a") as fh:  # other bytes: asked afresh
        fh.write("# reviewed\n")
    full = cli("status", python=("-X", "importtime"))
    assert full.stdout == answers[0]
    assert "pipeline.execution.project" in imported(
        full
    )  # the memo could not answer: planned afresh
    assert not imported(full) & {"hydra", "networkx"}  # from the declarations cache


def test_a_subfolder_of_a_workspace_means_the_workspace(cli: Cli, workspace: Path) -> None:
    """As git finds its repository: the nearest folder upward with a lock or a store."""
    inside = workspace / "notebooks" / "deeper"
    inside.mkdir(parents=True)
    here = make_cli(inside)
    assert here("status").stdout == cli("status").stdout
    assert (
        not (inside / ".pipeline").exists() and not (workspace / "notebooks" / ".pipeline").exists()
    )
    alone = here("--workspace", ".", "status", "--json")  # --workspace still wins
    assert {s["state"] for s in json.loads(alone.stdout)["stages"].values()} == {"never-ran"}


def test_run_ends_with_the_metrics_of_what_ran_and_where_the_figures_are(
    cli: Cli, workspace: Path
) -> None:
    ran = cli("run", "plot.dpi=50").stdout
    block = ran[ran.index("results:\n") :].splitlines()
    done = lockfile.read(workspace / paths.LOCK_NAME).stages
    # Only plot ran (its config changed), so only its metrics, as the lock records them.
    metrics = done["plot"].metrics
    assert block[1].split() == [
        "plot",
        *" ".join(f"{k} {metrics[k]:.4g}" for k in sorted(metrics)).split(),
    ]
    assert len(block) == 3, block
    pin = done["plot"].outputs["plots"]
    folder = f".pipeline/artifacts/{pin.name}/{pin.version}/"
    assert block[2].startswith(f"{pin.name} {pin.version}: {folder} (")
    shown = block[2].split(" (", 1)[1].rstrip(")").split(", ")
    assert any(name.endswith(".png") for name in shown)
    for name in shown:
        assert (workspace / folder / name).is_file(), name


def test_reasons_speak_in_the_users_keys_not_hydras(cli: Cli) -> None:
    found = status(cli)  # (cli, without overrides) then with another model chosen
    assert found["train"]["state"] == "fresh"
    changed = json.loads(cli("status", "train.model=resnet18", "--json").stdout)["stages"]
    assert changed["train"]["reasons"] == ["config changed: train.model cnn -> resnet18"]
    text = cli("status", "train.model=mlp", "train.model.hidden=64").stdout
    assert "config changed: train.model cnn -> mlp" in text
    assert "_target_" not in text and "_partial_" not in text and "hidden" not in text


def test_a_fresh_clone_is_told_to_pull_not_that_its_outputs_are_damaged(
    workspace: Path, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / paths.LOCK_NAME).write_bytes((workspace / paths.LOCK_NAME).read_bytes())
    cli = make_cli(clone)
    found = json.loads(cli("status", "--json").stdout)["stages"]
    assert found["prepare_data"]["reasons"] == [
        "output dataset-digits v0 is not in this store (`python -m pipeline pull` fetches what "
        "the lock pins; `run` makes it here)"
    ]
    only = cli("run", "evaluate", "--only", check=False)
    assert only.returncode == 2
    assert only.stderr == (
        "error: `--only` uses `dataset-digits` v0, which this store does not have: fetch it with "
        "`python -m pipeline pull prepare_data`, or make it with "
        "`python -m pipeline run prepare_data`\n"
    )


def test_help_says_what_the_tool_does_and_run_help_lists_the_stages(cli: Cli) -> None:
    top = cli("--help").stdout
    assert top.splitlines()[3].startswith("Run the stages of an ML pipeline")
    assert "start with:  python -m pipeline run" in top
    run = cli("run", "--help").stdout
    assert run.endswith(
        "stages (each stage's keys: python -m stages.<stage> --help):\n"
        "  prepare_data  logs dataset\n"
        "  train         uses dataset; logs model\n"
        "  evaluate      uses model, dataset; logs evaluation\n"
        "  plot          uses evaluation, model; logs plots\n"
    )


def test_a_blank_wandb_mode_is_no_choice_and_the_run_is_tracked(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    cli = make_cli(workspace)
    result = cli("run", "prepare_data", env={"WANDB_MODE": ""})
    assert "Callback" not in result.stderr and "ValidationError" not in result.stderr
    run = json.loads(cli("status", "--json").stdout)["stages"]["prepare_data"]["wandb"]
    assert run["mode"] == "offline" and run["id"]
