"""The README's "Everyday use" block, run in order in a fresh workspace: each comment holds."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.core import lock, lockfile, paths
from tests.e2e.support import env_for, make_cli
from tests.wandb_server import WandbServer

README = Path(__file__).resolve().parents[2] / "README.md"
Result = subprocess.CompletedProcess[str]


def everyday() -> list[tuple[list[str], str]]:
    """(the command's arguments after `python -m pipeline`, its comment), in order."""
    text = README.read_text(encoding="utf-8")
    block = text.split("## Everyday use", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    found = []
    for line in block.splitlines():
        command, _, comment = line.partition("#")
        words = shlex.split(command)
        assert words[:3] == ["python", "-m", "pipeline"], line
        found.append((words[3:], comment.strip()))
    return found


def _lines(result: Result, stage: str) -> list[str]:
    return [x for x in result.stdout.splitlines() if x.startswith(f"{stage}:")]


def _ran(result: Result) -> set[str]:
    return {x.split(":")[0] for x in result.stdout.splitlines() if ": done in " in x}


class Workspace:
    """The fresh workspace (a git repository) the block runs in, and a teammate's clone."""

    def __init__(self, root: Path, server: WandbServer) -> None:
        self.root, self.server = root, server
        self.folder = root / "ws"
        self.folder.mkdir()
        self.cli = make_cli(self.folder)
        self.git("init", "-q")

    def git(self, *args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=self.folder,
            check=True,
            capture_output=True,
        )

    def commit(self) -> None:
        self.git("add", paths.LOCK_NAME)
        self.git("commit", "-q", "-m", "lock")

    def clone(self, name: str) -> Callable[..., Result]:
        """A teammate's fresh clone: the lock only, W&B online against the local server."""
        folder = self.root / name
        folder.mkdir()
        shutil.copy(self.folder / paths.LOCK_NAME, folder / paths.LOCK_NAME)
        plain = make_cli(folder)
        return lambda *args: plain(*args, env=self.server.env())

    def pins(self, stage: str) -> lock.StageLock:
        return lockfile.read(self.folder / paths.LOCK_NAME).stages[stage]


def _check(ws: Workspace, args: list[str], comment: str) -> None:
    """Run one line of the block and check what its comment says."""
    key = " ".join(args)
    # `pull` and `run --pull` are a teammate's: they run in clones (below), not here.
    teammates = key in ("pull", "run --pull")
    online = args[0] == "sync"
    result = (
        ws.cli("status") if teammates else ws.cli(*args, env=ws.server.env() if online else None)
    )
    if key == "run evaluate" and "only if stale" in comment:
        assert _ran(result) == {"prepare_data", "train", "evaluate"}, result.stdout
        ws.commit()  # the lock of the defaults: `HEAD~1` of `lock diff` below
    elif key.startswith("run train train.lr=0.01"):
        assert _ran(result) == {"train"}, result.stdout  # "reruns train only"
        ws.commit()  # `HEAD` of `lock diff` below
    elif key == "status":
        states = json.loads(ws.cli("status", "--json").stdout)["stages"]
        assert {k: s["state"] for k, s in states.items()} == {
            "prepare_data": "fresh",
            "train": "fresh",
            "evaluate": "stale",
            "plot": "never-ran",
        }, result.stdout
        assert states["evaluate"]["reasons"] == ["input model changed: v0 -> v1"]
    elif key == "run evaluate":  # "evaluates the lr=0.01 model (overrides stick)"
        assert _ran(result) == {"evaluate"}, result.stdout
        assert "lr=0.01" in ws.pins("train").overrides
    elif key == "run evaluate --reset train":  # restored, nothing trains (nor evaluates)
        assert _ran(result) == set(), result.stdout
        assert "outputs restored from the store" in _lines(result, "train")[0]
        assert ws.pins("train").overrides == ()
    elif key == "run evaluate --only":  # upstream stages pinned, not run nor checked
        assert _lines(result, "train")[0].startswith("train: pinned (by the lock, for --only) ->")
        assert _ran(result) == set() and _lines(result, "evaluate"), result.stdout
    elif key == "run evaluate --force":
        assert _lines(result, "evaluate")[0] == "evaluate: run (forced)"
    elif key == "run evaluate --use model:v0":
        assert ws.pins("evaluate").inputs["model"].version == "v0"
    elif key == "run plot --dry-run":
        assert result.stdout.splitlines()[-1].startswith("dry run: ")
        assert _ran(result) == set()
    elif key == "sync":
        assert ws.server.runs(), result.stdout  # the offline runs reached the server
    elif key == "pull":  # on a fresh clone
        clone = ws.clone("clone")
        pulled = clone("pull")
        assert re.search(r"pulled (\d+) of \1 versions the lock pins", pulled.stdout), pulled
        states = json.loads(clone("status", "--json").stdout)["stages"]
        pinned = lockfile.read(ws.folder / paths.LOCK_NAME).stages
        assert {states[stage]["state"] for stage in pinned} == {"fresh"}, states
    elif key == "run --pull":  # a teammate's clone reuses what ran on W&B
        teammate = ws.clone("teammate")
        reused = teammate("run", "--pull")
        pinned = lockfile.read(ws.folder / paths.LOCK_NAME).stages
        assert not _ran(reused) & set(pinned), reused.stdout  # only plot, which never ran
        for stage in pinned:
            assert "same fingerprint ran on W&B" in _lines(reused, stage)[0], reused.stdout
    elif key == "runs --sort accuracy":  # the table, the best evaluation first
        header, best, *rest = result.stdout.splitlines()
        assert header.split()[:2] == ["key", "run"] and best.startswith("evaluate"), result.stdout
        assert len(rest) >= 2  # prepare_data and train (plot has not run yet)
    elif key == "dag --format mermaid":
        assert result.stdout.startswith(("flowchart", "graph")), result.stdout
    elif key.startswith("lineage model:"):
        assert result.stdout.startswith(f"{args[1]}  (model"), result.stdout
    elif key == "lock diff HEAD~1 HEAD":
        assert "config lr: 0.003 -> 0.01" in result.stdout, result.stdout
    elif key == "lock verify":
        assert result.returncode == 0
    elif key == "gc --dry-run":  # lists, removes nothing (the lr=0.01 versions are unpinned)
        assert "would remove model:v1" in result.stdout, result.stdout
        assert result.stdout.endswith("dry run: nothing was changed\n"), result.stdout
        assert ws.cli("status", "--json").returncode == 0
    elif key == "run evaluate --frozen":
        assert _ran(result) == {"prepare_data", "train", "evaluate"}, result.stdout
        assert result.stdout.endswith(
            "reproduced: every fingerprint and digest of these 3 stages matches the lock\n"
        )
    else:
        pytest.fail(f"the README's line `{key}` has no check here: add one")


@pytest.fixture
def server() -> Iterator[WandbServer]:
    with WandbServer() as running:
        yield running


def test_the_everyday_block_does_what_its_comments_say(tmp_path: Path, server: WandbServer) -> None:
    ws = Workspace(tmp_path, server)
    lines = everyday()
    assert len(lines) >= 15
    for args, comment in lines:
        _check(ws, args, comment)


def first_hour() -> list[tuple[list[str], list[str]]]:
    """The "Your first hour" transcript: (arguments after `python -m pipeline`, lines shown)."""
    text = README.read_text(encoding="utf-8")
    block = text.split("## Your first hour", 1)[1].split("```\n", 1)[1].split("```", 1)[0]
    found: list[tuple[list[str], list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            words = shlex.split(line[2:])
            assert words[:3] == ["python", "-m", "pipeline"], line
            found.append((words[3:], []))
        else:
            found[-1][1].append(line)
    return found


def _plain(text: str, workspace: Path) -> list[str]:
    """Output with what differs between runs made the same: W&B run ids, times, paths."""
    text = text.replace(f"{workspace}/", "")
    text = re.sub(r"(W&B offline run |offline )[a-z0-9]{8}\b", r"\1<id>", text)
    text = re.sub(r"done in [0-9.]+ s", "done in <t> s", text)
    # Fingerprints hash the code too: any edit of a stage's code changes them, not the bits.
    text = re.sub(r"fingerprint [0-9a-f]{8}\b", "fingerprint <fp>", text)
    # The per-epoch lines (left out of the README) and matplotlib's first-use note.
    return [
        line
        for line in text.splitlines()
        if "[pipeline.progress]" not in line and "matplotlib.font_manager" not in line
    ]


def test_the_first_hour_transcript_is_what_the_commands_print(tmp_path: Path) -> None:
    """The default config, so the figures are the README's own: digests and metrics are
    bit-exact on CPU; only W&B run ids, times, fingerprints (of the code) and the
    workspace's path may differ."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    for args, shown in first_hour():
        result = subprocess.run(
            [sys.executable, "-m", "pipeline", *args],
            cwd=workspace,
            env=env_for(workspace),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout
        assert _plain(result.stdout, workspace) == _plain("\n".join(shown), workspace), args
