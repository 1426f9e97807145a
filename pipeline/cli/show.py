"""The commands that show: dag, lineage, lock diff and verify, runs, and gc."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.cli import arguments
from pipeline.core import lock, lockfile, overrides, paths
from pipeline.core.errors import LockError, UsageError

if TYPE_CHECKING:  # networkx costs 0.2 s to import: only commands that need it load it
    import networkx as nx

EXIT_OK, EXIT_PROBLEMS = arguments.EXIT_OK, 1


def add_parsers(sub: Any) -> None:
    """Add `dag`, `lineage`, `lock` and `gc` to the command line's subparsers."""
    from pipeline.cli.diagram import FORMATS

    dag = sub.add_parser("dag", help="the stage graph with each stage's state and versions")
    dag.add_argument("--format", choices=FORMATS, default="ascii", help="default: ascii")
    dag.add_argument("args", nargs="*", metavar="STAGE.KEY=VALUE", help="overrides, or a sweep")
    dag.add_argument("-m", "--multirun", action="store_true", help="draw a sweep's members")
    lineage = sub.add_parser("lineage", help="where an artifact version came from, what used it")
    lineage.add_argument(
        "ref",
        metavar="NAME[:VERSION]",
        help="e.g. model:v2, model:latest; a bare name means the version the lock pins",
    )
    lineage.add_argument("--json", action="store_true", help="print the graph as JSON")
    lineage.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained page")
    locks = sub.add_parser("lock", help="compare or check dvc_free_lock.yaml")
    inner = locks.add_subparsers(dest="lock_command", required=True, parser_class=type(locks))
    diff = inner.add_parser("diff", help="what changed between two locks, stage by stage")
    diff.add_argument("old", nargs="?", default="HEAD", help="lock file or git revision (HEAD)")
    diff.add_argument("new", nargs="?", help="lock file or git revision (the workspace's lock)")
    diff.add_argument("--json", action="store_true", help="print a JSON document")
    inner.add_parser("verify", help="re-hash every artifact version the lock pins")
    runs = sub.add_parser("runs", help="the experiments table: each stage and member, metrics")
    runs.add_argument("stage", nargs="?", help="only this stage's rows (its sweep members too)")
    runs.add_argument("--all", action="store_true", help="every run in the store, failed too")
    runs.add_argument("--sort", metavar="METRIC", help="best first: highest METRIC first")
    runs.add_argument("--ascending", action="store_true", help="with --sort: lowest first")
    shape = runs.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print a JSON document")
    shape.add_argument("--csv", action="store_true", help="print CSV, a column per key and metric")
    gc = sub.add_parser("gc", help="remove the store's versions no lock references")
    gc.add_argument("--dry-run", action="store_true", help="list what would go, change nothing")
    gc.add_argument(
        "-A",
        "--all-commits",
        action="store_true",
        help="also keep what every committed revision of the lock in git references",
    )


def _dag(args: argparse.Namespace) -> int:
    from pipeline.cli.diagram import render
    from pipeline.core.graph import order
    from pipeline.execution.project import open_project

    project, _ = open_project(args.workspace, args.args, multirun=args.multirun)
    project.close()  # its configs are composed: Hydra's store is not asked again
    steps = {s.stage: s for s in project.plan(order(project.graph))}
    notes = {}
    for stage, step in steps.items():
        entry = project.lock.stages.get(stage)
        versions = ", ".join(
            f"{p.name}:{p.version}" for p in (entry.outputs if entry else {}).values()
        )
        notes[stage] = f"{step.state}" + (f" · {versions}" if versions else "")
    print(render(project.member_graph(), notes, args.format))
    return EXIT_OK


def _check_page(target: Path) -> None:
    """``--html FILE`` must name a file in a folder that exists."""
    if target.is_dir():
        raise UsageError(
            f"`--html {target}` is a folder; name a file in it, e.g. "
            f"`--html {target / 'lineage.html'}`"
        )
    if not target.parent.is_dir():
        raise UsageError(
            f"`--html {target}`: the folder `{target.parent}` does not exist; create it "
            "or write the page elsewhere"
        )


def _lineage(args: argparse.Namespace) -> int:
    from pipeline.state import lineage
    from pipeline.state.store import open_existing

    if args.html is not None:
        _check_page(args.html)
    name, version, note = lineage.ref_in(args.workspace, args.ref)
    store = open_existing(args.workspace)
    graph = lineage.of(store, name, version)
    if note:
        print(f"note: {note}", file=sys.stderr)
    if args.html:
        from pipeline.cli.report import render_html

        args.html.write_text(render_html(graph), encoding="utf-8")
        print(f"wrote {args.html}")
    elif args.json:
        import networkx as nx

        doc = nx.node_link_data(graph, edges="edges")
        print(json.dumps(doc, indent=2, sort_keys=True, default=str))
    else:
        print("\n".join(_tree(graph)))
    return EXIT_OK


def _describe(graph: nx.DiGraph, node: str) -> str:
    n = graph.nodes[node]
    if n["kind"] == "artifact":
        return (
            f"{n['name']}:{n['version']}  ({n['type']}, {n['files']} files, "
            f"{n['size']} bytes, digest {n['digest'][:8]})"
            + ("  (removed by gc)" if n.get("removed") else "")
        )
    wandb = f", W&B {n['wandb']['mode']} run {n['wandb']['id']}" if n["wandb"] else ""
    return (
        f"run #{n['run']} {n['stage']}  ({n['status']}, fingerprint {n['fingerprint'][:8]}{wandb})"
    )


def _tree(graph: nx.DiGraph) -> list[str]:
    import networkx as nx

    focus = graph.graph["focus"]
    lines = [_describe(graph, focus), "made by:"]
    up = nx.single_source_shortest_path_length(graph.reverse(copy=False), focus)
    lines += _walk(graph, focus, graph.predecessors, up) or ["  (nothing: not made here)"]
    lines.append("used by:")
    down = nx.single_source_shortest_path_length(graph, focus)
    lines += _walk(graph, focus, graph.successors, down) or ["  (nothing yet)"]
    return lines


def _walk(
    graph: nx.DiGraph,
    node: str,
    step: Callable[[str], Any],
    depth: dict[str, int],
    shown: set[str] | None = None,
) -> list[str]:
    """Each node once, under a neighbour one step nearer the focus (its shortest path)."""
    lines, shown = [], set() if shown is None else shown
    indent = "  " * depth[node] + "  "
    for nxt in sorted(step(node)):
        if depth[nxt] != depth[node] + 1 or nxt in shown:
            continue
        shown.add(nxt)
        lines.append(f"{indent}{_describe(graph, nxt)}")
        if graph.nodes[nxt]["kind"] == "run":
            keys = overrides.user_config(
                graph.nodes[nxt]["config"], graph.nodes[nxt].get("overrides", ())
            )
            config = " ".join(f"{k}={v}" for k, v in sorted(keys.items()))
            lines.append(f"{indent}  config: {config}")
        lines += _walk(graph, nxt, step, depth, shown)
    return lines


def _read_lock(ref: str, workspace: Path) -> lock.Lock:
    """A lock from a file, or from a git revision of the workspace's lock."""
    path = Path(ref)
    if path.is_file():
        return lockfile.read(path)
    top = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"],
        cwd=workspace,
        capture_output=True,
        text=True,
        check=False,
    )
    if top.returncode != 0:
        raise UsageError(
            f"`{ref}` is not a lock file, and `{workspace}` is not in a git repository"
        )
    rel = (workspace / paths.LOCK_NAME).resolve().relative_to(Path(top.stdout.strip()).resolve())
    shown = subprocess.run(
        ["git", "show", f"{ref}:{rel.as_posix()}"],
        cwd=workspace,
        capture_output=True,
        text=True,
        check=False,
    )
    if shown.returncode != 0:
        raise UsageError(f"`{ref}` is neither a lock file nor a git revision holding `{rel}`")
    return lock.loads(shown.stdout, source=f"{ref}:{rel.as_posix()}")


def _lock(args: argparse.Namespace) -> int:
    if args.lock_command == "verify":
        return _verify(args.workspace)
    from pipeline.core.diff import diff

    old = _read_lock(args.old, args.workspace)
    new = (
        _read_lock(args.new, args.workspace)
        if args.new
        else lockfile.read(args.workspace / paths.LOCK_NAME)
    )
    changes = diff(old, new)
    if args.json:
        doc = {
            "stages": {c.stage: {"status": c.status, "changes": list(c.changes)} for c in changes}
        }
        print(json.dumps(doc, indent=2, sort_keys=True))
        return EXIT_OK
    for change in changes:
        print(f"{change.stage}: {change.status}")
        print("".join(f"  {line}\n" for line in change.changes), end="")
    if not changes:
        print("no changes")
    return EXIT_OK


def _verify(workspace: Path) -> int:
    from pipeline.core.sweep import stage_of  # networkx: only for the commands that need it
    from pipeline.state.store import Store

    pinned = lockfile.read(workspace / paths.LOCK_NAME)
    if not pinned.stages:
        raise LockError(f"`{workspace / paths.LOCK_NAME}` pins nothing to verify")
    store = Store(workspace)
    damaged: list[str] = []
    for stage, entry in sorted(pinned.stages.items()):
        for pin in entry.outputs.values():
            problem = store.verify(pin)
            damaged += [stage] if problem is not None else []
            state = "ok" if problem is None else "BAD"
            print(
                f"{state:4} {stage}: {pin.name}:{pin.version}" + (f": {problem}" if problem else "")
            )
    total = sum(len(e.outputs) for e in pinned.stages.values())
    problems = len(damaged)
    fixes = "; ".join(
        f"`python -m pipeline run --force {stage_of(s)}`" for s in sorted(set(damaged))
    )
    print(
        f"{problems} of {total} pinned artifact versions have problems; rebuild them "
        f"(the store rewrites them from the rebuilt bits) with {fixes}"
        if problems
        else f"all {total} pinned artifact versions are intact"
    )
    return EXIT_PROBLEMS if problems else EXIT_OK


def _gc(args: argparse.Namespace) -> int:
    from pipeline.state import collect

    def waiting() -> None:
        print("waiting for `run` or `pull` in this workspace to finish", file=sys.stderr)

    garbage, revisions = collect.collect(args.workspace, args.all_commits, args.dry_run, waiting)
    print("\n".join(collect.summary(garbage, args.dry_run, revisions)))
    return EXIT_OK


def _runs(args: argparse.Namespace) -> int:
    from pipeline.core import experiments
    from pipeline.state.store import open_existing

    path = args.workspace / paths.LOCK_NAME
    records: list[dict[str, Any]] = []
    if not path.is_file() or (args.workspace / paths.STORE_DIR).is_dir():  # else a fresh clone
        store = open_existing(args.workspace)
        try:
            records = store.runs.all()
        finally:
            store.close()
    if args.all:
        rows = experiments.from_index(records)
    else:
        rows = experiments.from_lock(
            lockfile.read(path) if path.is_file() else lock.Lock(), records
        )
    rows = experiments.sort(experiments.select(rows, args.stage), args.sort, args.ascending)
    if args.json:
        print(experiments.as_json(rows), end="")
    elif args.csv:
        print(experiments.as_csv(rows), end="")
    else:
        print(experiments.text(rows), end="")
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "runs": _runs,
    "dag": _dag,
    "lineage": _lineage,
    "lock": _lock,
    "gc": _gc,
}
