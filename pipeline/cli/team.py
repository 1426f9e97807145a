"""`sync` and `pull`: the workspace and W&B, the team's store, exchange runs and versions."""

from __future__ import annotations

import argparse

from pipeline.cli import arguments
from pipeline.core import lockfile, paths
from pipeline.core.errors import RemoteError, UsageError

EXIT_OK = arguments.EXIT_OK


def sync(args: argparse.Namespace) -> int:
    """`sync`: upload the offline W&B runs, producers before consumers."""
    from pipeline.execution import remote, sync
    from pipeline.state.store import Store

    stage, tracking = arguments.wandb_only(args.args, "sync")
    if stage is not None or "project" in tracking:
        raise UsageError(
            "`sync` uploads every offline run to the project it was recorded in; it takes "
            "only `wandb.entity=E` (for runs recorded without an entity)"
        )
    if not (args.workspace / paths.STORE_DIR).is_dir():
        raise UsageError(f"`{args.workspace}` has no `{paths.STORE_DIR}`: nothing ran here yet")
    store = Store(args.workspace)
    todo = sync.pending(store)
    if not todo:
        print("nothing to sync: every W&B run is uploaded")
        return EXIT_OK
    if not args.dry_run:
        arguments.need_credentials("python -m pipeline sync")
    for number, run in enumerate(todo, 1):
        print(f"{number}. {run.stage}: W&B run {run.wandb_id} ({run.folder})")
    if args.dry_run:
        print(f"dry run: {len(todo)} offline runs would be uploaded in this order")
        return EXIT_OK
    entity = tracking.get("entity")
    try:  # W&B answers, and takes the key, before anything is sent
        remote.default_entity()
    except RemoteError as exc:
        raise RemoteError(
            f"{exc}; nothing was uploaded: rerun `python -m pipeline sync` once W&B answers"
        ) from exc
    sync.sync(store, todo, lambda: remote.where(entity).entity)
    print(f"synced {len(todo)} runs")
    return EXIT_OK


def pull(args: argparse.Namespace) -> int:
    """`pull`: fetch from W&B the versions the lock pins, into the store as those versions."""
    from pipeline.core import graph
    from pipeline.core.sweep import stage_of
    from pipeline.execution import remote
    from pipeline.execution.discover import stage_specs
    from pipeline.execution.pull import Pulled, pull_locked
    from pipeline.state.store import Store

    stage, tracking = arguments.wandb_only(args.args, "pull")
    specs = stage_specs()
    dag = graph.build(graph.Node(s.name, s.uses, tuple(o.name for o in s.logs)) for s in specs)
    targets = [graph.check_stage(dag, stage)] if stage else graph.sinks(dag)
    scope = set(graph.order(dag, targets))
    pinned = lockfile.read(args.workspace / paths.LOCK_NAME)
    keys = [key for key in pinned.stages if stage_of(key) in scope]
    if not keys:
        print(f"nothing to pull: `{paths.LOCK_NAME}` pins no stage up to `{stage or 'the end'}`")
        return EXIT_OK
    arguments.need_credentials("python -m pipeline pull")
    place = remote.where(tracking.get("entity"), tracking.get("project"))

    def report(item: Pulled) -> None:
        pin = item.pin
        what = f"pulled from {place.entity}/{place.project}" if item.fetched else "already here"
        print(f"{item.key}: {pin.name} {pin.version} ({pin.size:,} bytes) {what}", flush=True)

    from pipeline.state.collect import in_use

    with in_use(args.workspace, arguments.gc_waiting):
        done = pull_locked(Store(args.workspace), pinned, keys, place, report)
    fetched = sum(item.fetched for item in done)
    print(f"pulled {fetched} of {len(done)} versions the lock pins; the rest were here")
    return EXIT_OK


COMMANDS = {"sync": sync, "pull": pull}
