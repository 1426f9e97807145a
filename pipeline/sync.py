"""Upload offline W&B runs in lineage order, producers before consumers, each exactly once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from pipeline.errors import PipelineError
from pipeline.store import Store


@dataclass(frozen=True)
class Pending:
    """An offline W&B run not uploaded yet."""

    run: int  # the store's run id
    stage: str
    wandb_id: str
    folder: Path


def pending(store: Store) -> list[Pending]:
    """Offline runs not yet synced, producers before the runs that used their outputs.

    ``wandb sync`` of several runs uploads them in no fixed order, and a use can only
    link to a version that is already on the server, hence one run at a time, in the
    topological order of the lineage (ties by start order).
    """
    runs = store.runs.tracked()
    todo = {
        r["run"]: r
        for r in runs
        if r["tracking"].get("mode") == "offline" and not r["tracking"].get("synced")
    }
    logged_by = {o["digest"]: r["run"] for r in runs for o in r["outputs"].values()}
    lineage: nx.DiGraph = nx.DiGraph()
    lineage.add_nodes_from(todo)
    for run_id, run in todo.items():
        for pin in run["inputs"].values():
            producer = logged_by.get(pin["digest"])
            if producer in todo and producer != run_id:
                lineage.add_edge(producer, run_id)
    order = nx.lexicographical_topological_sort(lineage, key=lambda n: f"{n:012d}")
    workspace = store.root.parent
    return [
        Pending(
            n, todo[n]["stage"], todo[n]["tracking"]["id"], workspace / todo[n]["tracking"]["dir"]
        )
        for n in order
    ]


def wandb_sync(folder: Path) -> None:
    """Upload one offline run folder with `wandb sync`."""
    result = subprocess.run([sys.executable, "-m", "wandb", "sync", str(folder)], check=False)
    if result.returncode != 0:
        raise PipelineError(
            f"`wandb sync {folder}` failed (exit {result.returncode}); fix the cause and rerun "
            "`python -m pipeline sync`: runs already uploaded are skipped"
        )


def sync(store: Store, runs: list[Pending], upload: Callable[[Path], None] = wandb_sync) -> None:
    """Upload each run in order and record it, so that a second call skips it."""
    for run in runs:
        if not run.folder.is_dir():
            raise PipelineError(
                f"offline run folder `{run.folder}` of stage `{run.stage}` is gone; W&B "
                "needs it (and the files it staged) on this machine to sync"
            )
        upload(run.folder)
        store.runs.mark_synced(run.run)
