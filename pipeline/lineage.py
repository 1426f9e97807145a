"""Lineage from the store's index: the runs that made and used each artifact version."""

from __future__ import annotations

from typing import Any

import networkx as nx

from pipeline.errors import UsageError, did_you_mean
from pipeline.lock import InputPin
from pipeline.store import Store


def parse_ref(text: str) -> tuple[str, str]:
    """``model:v2`` -> (``model``, ``v2``); a bare name means ``latest``."""
    name, _, ref = text.partition(":")
    if not name:
        raise UsageError(f"`{text}` should be NAME or NAME:VERSION, e.g. `model:v2`")
    return name, ref or "latest"


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
