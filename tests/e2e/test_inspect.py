"""dag, lineage, lock diff and verify, and frozen reproduction, on real pipeline runs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.browser import needs_chromium
from tests.e2e.support import FAST, Cli, make_cli

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ["dataset-digits:v0", "model:v0", "evaluation:v0", "plots:v0"]


def test_dag_in_three_formats(cli: Cli) -> None:
    cli("run", "train", "train.lr=0.01")
    ascii_ = cli("dag").stdout
    assert "prepare_data  fresh · dataset-digits:v0" in ascii_
    assert "train         fresh · model:v1  <- prepare_data (dataset)" in ascii_
    assert "evaluate      stale · evaluation:v0  <- prepare_data (dataset), train (model)" in ascii_
    mermaid = cli("dag", "--format", "mermaid").stdout
    assert mermaid.startswith("flowchart LR\n")
    assert "  train -->|model| evaluate" in mermaid
    assert '  plot["plot<br/>stale · plots:v0"]' in mermaid
    dot = cli("dag", "--format", "dot").stdout
    assert dot.startswith("digraph pipeline {")
    assert '  "prepare_data" -> "train" [label="dataset"];' in dot


def test_lineage_text_and_json(cli: Cli) -> None:
    text = cli("lineage", "model").stdout
    assert text.startswith("model:v0  (model, 3 files,")
    made, used = text.split("used by:")
    assert "run #2 train  (ok" in made
    assert "dataset-digits:v0" in made
    assert "run #1 prepare_data" in made
    assert "run #3 evaluate" in used
    assert "plots:v0" in used
    doc = json.loads(cli("lineage", "evaluation:v0", "--json").stdout)
    nodes = {n["id"]: n for n in doc["nodes"]}
    assert doc["graph"]["focus"] == "artifact:evaluation:v0"
    assert {f"artifact:{a}" for a in ARTIFACTS} <= set(nodes)
    assert sorted(n["stage"] for n in nodes.values() if n["kind"] == "run") == sorted(
        ["prepare_data", "train", "evaluate", "plot"]
    )
    train = next(n for n in nodes.values() if n.get("stage") == "train")
    assert train["config"]["epochs"] == 2
    assert train["wandb"]["mode"] == "offline"
    edges = {(e["source"], e["target"], e["kind"]) for e in doc["edges"]}
    assert ("artifact:model:v0", f"run:{train['run'] + 1}", "used") in edges


def test_lineage_of_an_unknown_artifact_is_bad_input(cli: Cli) -> None:
    result = cli("lineage", "modle", check=False)
    assert result.returncode == 2
    assert result.stderr == "error: no artifact `modle` in the store; did you mean `model`?\n"
    result = cli("lineage", "model:v9", check=False)
    assert result.stderr == "error: `model` has no version `v9`; it has v0 and `latest`\n"


@needs_chromium
def test_the_lineage_page_draws_every_node_and_loads_nothing(cli: Cli, workspace: Path) -> None:
    from tests.browser import render

    page = workspace / "lineage.html"
    cli("lineage", "evaluation", "--html", str(page))
    shown = render(page, workspace.parent)
    assert shown.requests == []
    for artifact in ARTIFACTS:
        assert f'data-node="artifact:{artifact}"' in shown.dom
    for run in range(1, 5):
        assert f'data-node="run:{run}"' in shown.dom
    assert shown.dom.count('src="data:image/png;base64,') >= 3  # plot's figures


def _git(workspace: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        ["git", *args], cwd=workspace, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


def test_lock_diff_between_git_revisions_and_files(cli: Cli, workspace: Path) -> None:
    _git(workspace, "init", "-q")
    _git(workspace, "add", "dvc_free_lock.yaml")
    _git(workspace, "commit", "-q", "-m", "first")
    assert cli("lock", "diff").stdout == "no changes\n"
    cli("run", "train.lr=0.01")
    against_head = cli("lock", "diff").stdout
    _git(workspace, "commit", "-q", "-am", "second")
    text = cli("lock", "diff", "HEAD~1", "HEAD").stdout
    assert text == against_head
    assert "prepare_data" not in text
    assert "train: changed\n  config lr: 0.003 -> 0.01\n" in text
    assert "  output model: model:v0 (" in text
    assert ") -> model:v1 (" in text
    assert "evaluate: changed" in text
    assert "  input model: model:v0" in text
    assert "  metric accuracy: " in text
    doc = json.loads(cli("lock", "diff", "HEAD~1", "HEAD", "--json").stdout)["stages"]
    assert sorted(doc) == ["evaluate", "plot", "train"]
    delta = next(c for c in doc["evaluate"]["changes"] if c.startswith("metric accuracy"))
    old, new = (float(x) for x in delta.split(": ")[1].split(" (")[0].split(" -> "))
    assert delta.endswith(f"({new - old:+.6g})")
    old_file = workspace.parent / "old.yaml"
    old_file.write_text(_git(workspace, "show", "HEAD~1:dvc_free_lock.yaml"))
    assert cli("lock", "diff", str(old_file), "HEAD").stdout == text
    bad = cli("lock", "diff", "nope", check=False)
    assert bad.returncode == 2
    assert "`nope` is neither a lock file nor a git revision" in bad.stderr


def test_verify_reports_a_flipped_byte(cli: Cli, workspace: Path) -> None:
    assert cli("lock", "verify").stdout.endswith("all 4 pinned artifact versions are intact\n")
    weights = workspace / ".pipeline" / "artifacts" / "model" / "v0" / "state_dict.pt"
    weights.chmod(0o644)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    result = cli("lock", "verify", check=False)
    assert result.returncode == 1
    assert "BAD  train: model:v0: corrupt state_dict.pt (content differs from its digest)" in (
        result.stdout
    )
    assert "1 of 4 pinned artifact versions have problems; rebuild them" in result.stdout


def test_two_fresh_workspaces_write_identical_locks(tmp_path: Path, ran_once: Path) -> None:
    other = tmp_path / "again"
    other.mkdir()
    make_cli(other)("run", *FAST)
    first = yaml.safe_load((ran_once / "dvc_free_lock.yaml").read_text())["stages"]
    second = yaml.safe_load((other / "dvc_free_lock.yaml").read_text())["stages"]
    digests = {s: {k: o["digest"] for k, o in e["outputs"].items()} for s, e in first.items()}
    assert digests == {
        s: {k: o["digest"] for k, o in e["outputs"].items()} for s, e in second.items()
    }
    assert (ran_once / "dvc_free_lock.yaml").read_bytes() == (
        other / "dvc_free_lock.yaml"
    ).read_bytes()


def test_frozen_reproduces_the_committed_lock(tmp_path: Path) -> None:
    workspace = tmp_path / "clone"
    workspace.mkdir()
    shutil.copy(ROOT / "dvc_free_lock.yaml", workspace)
    result = make_cli(workspace)("run", "--frozen", "--json")
    steps = json.loads(result.stdout)["steps"]
    assert [(s["stage"], s["action"]) for s in steps] == [
        ("prepare_data", "run"),
        ("train", "run"),
        ("evaluate", "run"),
        ("plot", "run"),
    ]
    assert (workspace / "dvc_free_lock.yaml").read_bytes() == (
        ROOT / "dvc_free_lock.yaml"
    ).read_bytes()


def test_frozen_fails_naming_the_stage_and_artifact(cli: Cli, workspace: Path) -> None:
    path = workspace / "dvc_free_lock.yaml"
    text = path.read_text()
    model = yaml.safe_load(text)["stages"]["train"]["outputs"]["model"]["digest"]
    path.write_text(text.replace(model, "f" * 32))
    tampered = path.read_text()
    result = cli("run", "--frozen", check=False)
    assert result.returncode == 1
    assert (
        f"error: stage `train` did not reproduce the lock: artifact `model` has digest {model}, "
        f"the lock pins {'f' * 32} (model:v0)"
    ) in result.stderr
    assert path.read_text() == tampered
    refused = cli("run", "--frozen", "train.lr=1", check=False)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: `--frozen` reproduces the lock as it is")
