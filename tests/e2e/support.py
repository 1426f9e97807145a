"""Helpers for end-to-end tests: the real CLI in a subprocess, W&B offline."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Few epochs keep the suite fast; the README's figures come from the default config.
FAST = ("train.epochs=2",)
#: Overrides in range that still make `train` fail as it runs: SqueezeNet's pooling
#: shrinks an 8x8 digit (upsampled to no less than 1x1) to nothing.
TRAIN_FAILS = ("train.model=squeezenet1_0", "train.model.min_size=1")

Cli = Callable[..., subprocess.CompletedProcess[str]]


def env_for(workspace: Path) -> dict[str, str]:
    """The environment the CLI runs with in a test workspace."""
    return _env(workspace.parent)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        # W&B offline, its run files in the workspace's wandb/, its staging area and
        # settings in the test's folder, and no credentials (HOME holds no .netrc).
        WANDB_MODE="offline",
        WANDB_DATA_DIR=str(home / "wandb-data"),
        WANDB_CACHE_DIR=str(home / "wandb-cache"),
        WANDB_CONFIG_DIR=str(home / "wandb-config"),
        HOME=str(home),
        # Hydra turns a callback's exception into a warning: make every warning fatal,
        # so that a broken W&B callback fails the test instead of passing silently.
        PYTHONWARNINGS="error",
    )
    return env


def copy_workspace(source: Path, folder: Path) -> Path:
    """A private copy of a workspace at ``folder / "ws"`` (links kept as links)."""
    copy = folder / "ws"
    shutil.copytree(source, copy, symlinks=True)
    return copy


def make_cli(workspace: Path) -> Cli:
    """A function running ``python -m pipeline --workspace WS ARGS`` and returning the result."""

    def cli(
        *args: str,
        check: bool = True,
        python: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        module: str = "pipeline",
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, *python, "-m", module, *args],
            cwd=workspace,
            env={**_env(workspace.parent), **(env or {})},
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    return cli


def spawn_cli(
    workspace: Path, *args: str, env: dict[str, str] | None = None, output: bool = True
) -> subprocess.Popen[str]:
    """``python -m pipeline ARGS`` in ``workspace``, in the background.

    Its output is gathered (read it with ``communicate``), or dropped without ``output``
    (a process the test kills: what it started may hold the pipes open).
    """
    pipe = subprocess.PIPE if output else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        cwd=workspace,
        env={**env_for(workspace), **(env or {})},
        stdout=pipe,
        stderr=pipe,
        text=True,
    )


def handed_back(workspace: Path, name: str) -> list[dict[str, Any]]:
    """The records of the jobs a `run` launched (`started.json`, `result.json`), as found."""
    found = []
    for path in sorted((workspace / ".pipeline" / "handback").glob(f"*/{name}")):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):  # gone, as the run booked it
            continue
    return found


def actions(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Stage -> action from ``run --json`` output."""
    return {s["stage"]: s["action"] for s in json.loads(result.stdout)["steps"]}


def status(cli: Cli) -> dict[str, Any]:
    """Each stage's state and reasons from ``status --json`` (its W&B run left out)."""
    doc = json.loads(cli("status", "--json").stdout)["stages"]
    return {name: {k: v for k, v in s.items() if k != "wandb"} for name, s in doc.items()}


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``folder``: size, mtime and MD5 (SQLite's transient -wal/-shm left out)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.endswith(("-wal", "-shm")):
            st = path.stat()
            digest = hashlib.md5(path.read_bytes()).hexdigest()
            found[path.relative_to(folder).as_posix()] = (st.st_size, st.st_mtime_ns, digest)
    return found
