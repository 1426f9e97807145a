"""Where things live: every file and folder of a workspace, named once, and the tool's code.

A workspace holds the lock beside `.pipeline/`, the store: its SQLite index, content
objects, materialised versions, temporary files, lock files for processes that share it,
and the caches (the no-op memo, the parsed lock, the declared configs, the stat cache).
Every module asks here for a path instead of spelling it, so none imports another only
for a constant.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

LOCK_NAME = "dvc_free_lock.yaml"
STORE_DIR = ".pipeline"
INDEX_NAME = "index.sqlite"
# This machine's name in temporary and hand-back file names (`HOST-PID-XXXX`).
HOST = socket.gethostname().replace("-", "_") or "host"
#: The environment variable naming the stages' package (default `stages`).
STAGES_ENV = "PIPELINE_STAGES"
# The tool's own package: its code is part of what every cache depends on.
TOOL = Path(__file__).resolve().parent.parent


def lock_file(workspace: Path) -> Path:
    """The lock, `dvc_free_lock.yaml`, at the workspace's top."""
    return workspace / LOCK_NAME


def store_dir(workspace: Path) -> Path:
    """The store, `.pipeline/`."""
    return workspace / STORE_DIR


def index_file(store: Path) -> Path:
    """The store's SQLite index."""
    return store / INDEX_NAME


def locks_dir(store: Path) -> Path:
    """The file locks processes of one workspace take (claims, the lock file, gc)."""
    return store / "locks"


def memo_dir(store: Path) -> Path:
    """The no-op memo's answers and the stamp the index touches."""
    return store / "memo"


def lock_cache(workspace: Path) -> Path:
    """The parsed lock, kept beside the store (see `pipeline.core.lockfile.read`)."""
    return store_dir(workspace) / "lock.json"


def declared_cache(workspace: Path) -> Path:
    """Each stage's declared config, kept under what it depends on."""
    return store_dir(workspace) / "declared.json"


def stages_package() -> str:
    """The importable package whose `STAGES` lists the project's stages."""
    return os.environ.get(STAGES_ENV) or "stages"


def tool_sources() -> list[Path]:
    """Every source file of this tool, in a stable order."""
    return sorted(TOOL.rglob("*.py"))
