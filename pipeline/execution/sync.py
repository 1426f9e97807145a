"""Upload offline W&B runs so that W&B's graph is the store's: same versions, same edges."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from pipeline.core.errors import PipelineError, RemoteError
from pipeline.execution import remote, wandb_file
from pipeline.state.store import Store


@dataclass(frozen=True)
class Pending:
    """An offline W&B run not uploaded yet."""

    run: int  # the store's run id
    stage: str
    wandb_id: str
    folder: Path
    size: int = 0  # bytes of the artifacts it logged


def creators(runs: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], int]:
    """(artifact name, digest) -> the run that made that version first.

    A run records which of its outputs were new versions; for runs recorded before that,
    the first run that logged the digest.
    """
    made: dict[tuple[str, str], int] = {}
    for run in sorted(runs, key=lambda r: r["run"]):
        created = run["tracking"].get("created")
        for logical, out in run["outputs"].items():
            key = (out["name"], out["digest"])
            if created is None:
                made.setdefault(key, run["run"])
            elif logical in created:
                made[key] = run["run"]
    return made


def order(runs: Sequence[Mapping[str, Any]], todo: Iterable[int]) -> list[int]:
    """The runs of ``todo`` in an order that makes W&B number versions as the store did.

    W&B numbers a collection's versions in the order they are committed, and a use or
    a re-log lands on a version only if it is already there (dedup by digest). So: the
    creator of a version before every run that used or logged it again, and the
    creators of one artifact's versions in version order. Ties go by start order.
    """
    pending = set(todo)
    made = creators(runs)
    graph: nx.DiGraph = nx.DiGraph()
    graph.add_nodes_from(pending)
    for run in runs:
        pins = [*run["inputs"].values(), *run["outputs"].values()]
        for pin in pins:
            maker = made.get((pin["name"], pin["digest"]))
            if maker in pending and run["run"] in pending and maker != run["run"]:
                graph.add_edge(maker, run["run"])
    by_name: dict[str, list[tuple[int, int]]] = {}
    versions = {(o["name"], o["digest"]): o["version"] for r in runs for o in r["outputs"].values()}
    for (name, digest), maker in made.items():
        by_name.setdefault(name, []).append((int(versions[(name, digest)][1:]), maker))
    for chain in by_name.values():
        makers = [m for _, m in sorted(chain) if m in pending]
        graph.add_edges_from((a, b) for a, b in itertools.pairwise(makers) if a != b)
    try:
        return list(nx.lexicographical_topological_sort(graph, key=lambda n: f"{n:012d}"))
    except nx.NetworkXUnfeasible:  # parallel runs that made versions of two names crosswise
        return sorted(pending)


def pending(store: Store) -> list[Pending]:
    """Offline runs not yet synced, in the order that reproduces the store's graph on W&B."""
    runs = store.runs.tracked()
    todo = {
        r["run"]: r
        for r in runs
        if r["tracking"].get("mode") == "offline" and not r["tracking"].get("synced")
    }
    workspace = store.root.parent
    return [
        Pending(
            n,
            todo[n]["stage"],
            todo[n]["tracking"]["id"],
            workspace / todo[n]["tracking"]["dir"],
            sum(int(o.get("size", 0)) for o in todo[n]["outputs"].values()),
        )
        for n in order(runs, todo)
    ]


def wandb_sync(run: Pending) -> None:
    """Upload one offline run folder with `wandb sync`, within a bound on its time.

    `wandb sync` exits 0 even when the server refused an artifact (it only writes that
    to its debug log): the log is read too, and such a run is not taken as uploaded.
    """
    # W&B's retries bounded; at least 20 MB/s for the artifacts, or it is taken to hang.
    limit = 3 * remote.timeout_s() + run.size / 20e6
    began = time.time()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "wandb", "sync", str(run.folder)],
            env={**os.environ, **remote.client_env()},
            capture_output=True,
            text=True,
            timeout=limit,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RemoteError(
            f"`wandb sync` of `{run.stage}` (W&B run {run.wandb_id}) did not finish within "
            f"{limit:.0f} s; check that W&B is reachable and rerun `python -m pipeline sync` "
            "(runs already uploaded are skipped)"
        ) from exc
    said = (result.stdout + result.stderr).strip().splitlines()
    failed = _logged_failures(run.folder, began)
    if result.returncode != 0 or failed:
        last = failed[0] if failed else said[-1] if said else f"exit {result.returncode}"
        raise RemoteError(
            f"`wandb sync {run.folder}` failed ({last}); fix the cause and rerun "
            "`python -m pipeline sync`: runs already uploaded are skipped"
        )


def _logged_failures(folder: Path, since: float) -> list[str]:
    """What wandb-core's debug logs of this sync say failed for this run folder."""
    logs = Path(os.environ.get("WANDB_DIR") or ".") / "wandb" / "logs"
    found = []
    for path in sorted(logs.glob("debug-sync.*.log")) if logs.is_dir() else []:
        if path.stat().st_mtime < since - 1:
            continue
        for text in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(text)
            except ValueError:
                continue
            if not isinstance(entry, dict) or folder.name not in str(entry.get("sync_path")):
                continue
            if entry.get("level") in ("ERROR", "WARN") and "fail" in str(entry.get("msg")):
                found.append(" ".join(str(entry.get(k, "")) for k in ("msg", "error")).strip())
    return found


def sync(
    store: Store,
    runs: list[Pending],
    entity: Callable[[], str],
    upload: Callable[[Pending], None] = wandb_sync,
) -> None:
    """Upload each run in order and record it, so that a second call skips it.

    A run recorded without an entity gets ``entity()`` (asked once) in its run and
    artifact records first, so that its artifacts go where the run goes.
    """
    named: list[str] = []
    for run in runs:
        if not run.folder.is_dir():
            raise PipelineError(
                f"offline run folder `{run.folder}` of stage `{run.stage}` is gone; W&B "
                "needs it (and the files it staged) on this machine to sync"
            )
        path = wandb_file.run_file(run.folder)
        if "" in wandb_file.entities(path):
            named = named or [entity()]
            wandb_file.name_entity(path, named[0])
        upload(run)
        store.runs.mark_synced(run.run)
