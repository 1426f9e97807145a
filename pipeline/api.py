"""A small Python API for notebooks: artifact paths, lock entries and lineage graphs."""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from pipeline.core import lock as _lock
from pipeline.core import lockfile
from pipeline.core.errors import UsageError, did_you_mean
from pipeline.core.paths import LOCK_NAME
from pipeline.state import lineage as _lineage
from pipeline.state.store import open_existing

__all__ = ["artifact", "lineage", "lock_entry"]


def artifact(ref: str, workspace: str | Path = ".") -> Path:
    """The read-only local folder of an artifact version: ``model:v2``, ``evaluation:latest``.

    A bare name (``model``) means the version the workspace's lock pins.
    """
    name, version, _ = _lineage.ref_in(Path(workspace), ref)
    store = open_existing(Path(workspace))
    try:
        pin = _lineage.resolve(store, name, version)
        return store.path(pin.name, pin.version)
    finally:
        store.close()


def lock_entry(stage: str, workspace: str | Path = ".") -> _lock.StageLock:
    """A stage's block in the workspace's `dvc_free_lock.yaml`."""
    pinned = lockfile.read(Path(workspace) / LOCK_NAME).stages
    if stage not in pinned:
        raise UsageError(f"the lock pins no stage `{stage}`{did_you_mean(stage, pinned)}")
    return pinned[stage]


def lineage(ref: str, workspace: str | Path = ".") -> nx.DiGraph:
    """The lineage of an artifact version as a ``networkx.DiGraph``.

    Nodes are runs (``run:<n>``: stage, status, fingerprint, config, metrics, W&B run) and
    artifact versions (``artifact:<name>:<version>``: type, digest, size, files, path);
    edges go artifact -> run for a use and run -> artifact for a log.
    ``graph.graph["focus"]`` is the version asked for; a bare name means the lock's pin.
    """
    name, version, _ = _lineage.ref_in(Path(workspace), ref)
    store = open_existing(Path(workspace))
    try:
        return _lineage.of(store, name, version)
    finally:
        store.close()
