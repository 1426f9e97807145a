"""The index side of a job's hand-back: its versions and run recorded, by the submitter.

Also what a killed submitter left: its jobs' records stay in `.pipeline/handback/`, and
the next `run` on this host books them (:func:`adopt`) before it plans, so that members a
cluster finished are reused rather than run again.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from pipeline.core.lock import OutputPin
from pipeline.core.paths import STORE_DIR, locks_dir
from pipeline.state import handback
from pipeline.state.objects import remove
from pipeline.state.store import Store

#: The submitter's note in each hand-back folder: the member and its run in the index.
MEMBER = "member.json"


def book(store: Store, run_id: int, result: Mapping[str, Any]) -> dict[str, OutputPin]:
    """Record a job's versions and its run as done; the outputs as the lock pins them."""
    written = [tuple(row) for row in result.get("written", [])]
    outputs: dict[str, OutputPin] = {}
    created = []
    for key, handed in sorted(result["outputs"].items()):
        pin, new = store.record(OutputPin(**handed["pin"]), handed["manifest"], written)
        outputs[key] = pin
        if new:
            created.append(key)
    # Which outputs this run made first: `sync` uploads their creators in version order.
    tracking = {**result.get("tracking", {}), "created": created}
    environment = dict(result["environment"])
    store.runs.end(run_id, outputs, dict(result["metrics"]), tracking, environment=environment)
    return outputs


def book_failure(
    store: Store, run_id: int, result: Mapping[str, Any] | None, interrupted: bool
) -> None:
    """Record a job's run as failed, or as interrupted (it was cancelled, or killed)."""
    tracking = result.get("tracking", {}) if result else {}
    store.runs.end(run_id, None, {}, tracking, interrupted=interrupted)


def adopt(workspace: Path) -> None:
    """Book the hand-backs of this host's submitters that died; leave jobs still running."""
    root = workspace / STORE_DIR
    folders = root / "handback"
    if not folders.is_dir() or not any(folders.iterdir()):
        return
    store = Store(workspace)
    try:
        with FileLock(locks_dir(root) / "adopt.lock"):
            for folder in sorted(folders.iterdir()):
                if handback.owner_alive(folder.name):
                    continue
                member = handback.read(folder, MEMBER)
                result = handback.read(folder, handback.RESULT)
                if member is None:
                    pass
                elif result is not None and "outputs" in result:
                    names = [o["pin"]["name"] for o in result["outputs"].values()]
                    with store.reserving(names):
                        book(store, int(member["run"]), result)
                elif result is None and handback.running(handback.read(folder, handback.STARTED)):
                    continue  # a cluster job still at work: the next `run` books it
                else:
                    book_failure(store, int(member["run"]), result, interrupted=result is None)
                remove(folder)
    finally:
        store.close()
