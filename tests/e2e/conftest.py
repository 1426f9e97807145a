"""End-to-end fixtures: temporary workspaces for the real CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import stages
from tests.e2e.support import FAST, Cli, copy_workspace, make_cli


@pytest.fixture(scope="session")
def ran_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace where the whole pipeline ran once (few epochs)."""
    workspace = tmp_path_factory.mktemp("base") / "ws"
    workspace.mkdir()
    make_cli(workspace)("run", *FAST)
    return workspace


@pytest.fixture
def workspace(ran_once: Path, tmp_path: Path) -> Path:
    """A private copy of the workspace that ran once."""
    return copy_workspace(ran_once, tmp_path)


@pytest.fixture
def cli(workspace: Path) -> Cli:
    return make_cli(workspace)


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """An empty workspace holding its own copy of the `stages` package, which shadows ours."""
    workspace = tmp_path / "own"
    workspace.mkdir()
    shutil.copytree(
        Path(stages.__file__).parent,
        workspace / "stages",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return workspace
