"""Lineage from the store's index: the runs that made and used each artifact version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx

from pipeline.core.errors import UsageError, did_you_mean
from pipeline.core.lock import InputPin, Lock
from pipeline.core.lockfile import read
from pipeline.core.paths import LOCK_NAME
from pipeline.state.store import Store


def parse_ref(text: str) -> tuple[str, str | None]:
    """``model:v2`` -> (``model``, ``v2``); a bare name has no version (None)."""
    name, _, ref = text.partition(":")
    if not name:
        raise UsageError(f"`{text}` should be NAME or NAME:VERSION, e.g. `model:v2`")
    return name, ref or None


def pinned(lock: Lock, name: str) -> dict[str, list[str]]:
    """The versions of ``name`` the lock pins, each with the blocks that log or use it."""
    found: dict[str, list[str]] = {}
    for key, block in sorted(lock.stages.items()):
        pins = {p.version for p in block.outputs.values() if p.name == name}
        pins |= {p.version for p in block.inputs.values() if p.name == name}
        for version in sorted(pins):
            found.setdefault(version, []).append(key)
    return found


def choose(name: str, ref: str | None, lock: Lock | None) -> tuple[str, str | None]:
    """The version a ref means, and a note when it is not what the user may think.

    ``NAME:VERSION`` and ``NAME:latest`` mean what they say (``latest`` as in W&B: the
    newest version in the store); a bare ``NAME`` means the version the lock pins, as
    `dvc` commands read `dvc.lock`: the pipeline's own stages first, then a sweep's
    members, which need one named when they pin several.
    """
    if ref is not None:
        return ref, None
    versions = pinned(lock, name) if lock is not None else {}
    if not versions:
        return "latest", f"{LOCK_NAME} pins no `{name}`; showing `{name}:latest`"
    order = sorted(versions, key=lambda v: (len(v), v))  # v2 before v10
    main = [v for v in order if any("[" not in key for key in versions[v])]
    if len(main) == 1 or len(order) == 1:
        chosen = (main or order)[0]
        others = [v for v in order if v != chosen]
        if not others:
            return chosen, None
        return chosen, (
            f"{LOCK_NAME} also pins {_listed(name, others)} for sweep members "
            f"(name one to see it, e.g. `{name}:{others[0]}`)"
        )
    raise UsageError(
        f"{LOCK_NAME} pins {len(order)} versions of `{name}` for sweep members: "
        f"{_listed(name, order)}; name one, e.g. `{name}:{order[0]}`"
    )


def _listed(name: str, versions: list[str]) -> str:
    shown = ", ".join(f"`{name}:{v}`" for v in versions[:4])
    return shown + (f" and {len(versions) - 4} more" if len(versions) > 4 else "")


def ref_in(workspace: Path, text: str) -> tuple[str, str, str | None]:
    """``(name, version, note)`` for a ref typed in a workspace (see :func:`choose`)."""
    name, ref = parse_ref(text)
    path = workspace / LOCK_NAME
    lock = read(path) if ref is None and path.is_file() else None
    return (name, *choose(name, ref, lock))


def artifact_id(name: str, version: str) -> str:
    """The node id of an artifact version."""
    return f"artifact:{name}:{version}"


def full(store: Store) -> nx.DiGraph:
    """Every artifact version and run; edges artifact -> run (used), run -> artifact (logged)."""
    graph: nx.DiGraph = nx.DiGraph()
    for v in store.all_versions():
        path = v["path"]
        images = sorted(str(p) for p in path.rglob("*.png")) if path.is_dir() else []
        graph.add_node(
            artifact_id(v["name"], v["version"]),
            kind="artifact",
            **{k: v[k] for k in ("name", "version", "type", "digest", "size", "files")},
            path=str(path) if path.is_dir() else None,
            images=images,
        )
    for run in store.runs.all():
        node = f"run:{run['run']}"
        graph.add_node(
            node,
            kind="run",
            wandb=run["wandb"] if run["wandb"].get("id") else None,
            **{
                k: run[k]
                for k in (
                    "run",
                    "stage",
                    "status",
                    "fingerprint",
                    "code_digest",
                    "config",
                    "metrics",
                )
            },
        )
        for pin in run["inputs"].values():
            graph.add_edge(_version(graph, pin), node, kind="used")
        for pin in run["outputs"].values():
            graph.add_edge(node, _version(graph, pin), kind="logged")
    return graph


def _version(graph: nx.DiGraph, pin: dict[str, Any]) -> str:
    """A version's node; one `gc` removed stays in the lineage, marked as removed."""
    node = artifact_id(pin["name"], pin["version"])
    if node not in graph:
        graph.add_node(
            node,
            kind="artifact",
            name=pin["name"],
            version=pin["version"],
            type=pin.get("type", ""),
            digest=pin["digest"],
            size=pin.get("size", 0),
            files=pin.get("files", 0),
            path=None,
            images=[],
            removed=True,
        )
    return node


def resolve(store: Store, name: str, ref: str = "latest") -> InputPin:
    """An artifact version, or a one-line error naming what the store has."""
    pin = store.resolve(name, ref)
    if pin is not None:
        return pin
    names = sorted({v["name"] for v in store.all_versions()})
    if name not in names:
        raise UsageError(f"no artifact `{name}` in the store{did_you_mean(name, names)}")
    versions = ", ".join(store.versions(name))
    raise UsageError(f"`{name}` has no version `{ref}`; it has {versions} and `latest`")


def of(store: Store, name: str, ref: str = "latest") -> nx.DiGraph:
    """The lineage of one artifact version: everything upstream and downstream of it."""
    pin = resolve(store, name, ref)
    graph = full(store)
    focus = artifact_id(pin.name, pin.version)
    keep = nx.ancestors(graph, focus) | nx.descendants(graph, focus) | {focus}
    sub: nx.DiGraph = graph.subgraph(keep).copy()
    sub.graph["focus"] = focus
    return sub
