"""Helpers for end-to-end tests: the real CLI in a subprocess, W&B offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Few epochs keep the suite fast; the README's figures come from the default config.
FAST = ("train.epochs=2",)

Cli = Callable[..., subprocess.CompletedProcess[str]]


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        WANDB_MODE="offline",
        WANDB_DIR=str(home / "wandb-dir"),
        WANDB_DATA_DIR=str(home / "wandb-data"),
        WANDB_CACHE_DIR=str(home / "wandb-cache"),
        WANDB_CONFIG_DIR=str(home / "wandb-config"),
        PYTHONHASHSEED="0",
    )
    return env


def make_cli(workspace: Path) -> Cli:
    """A function running ``python -m pipeline --workspace WS ARGS`` and returning the result."""

    def cli(
        *args: str, check: bool = True, python: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, *python, "-m", "pipeline", *args],
            cwd=workspace,
            env=_env(workspace.parent),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    return cli


def actions(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Stage -> action from ``run --json`` output."""
    return {s["stage"]: s["action"] for s in json.loads(result.stdout)["steps"]}


def status(cli: Cli) -> dict[str, Any]:
    """The ``status --json`` document's stages."""
    stages_doc: dict[str, Any] = json.loads(cli("status", "--json").stdout)["stages"]
    return stages_doc
