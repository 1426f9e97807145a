"""Lineage graphs, as `pipeline.state.lineage` builds them, for the printers' tests."""

from __future__ import annotations

import hashlib

import networkx as nx


def artifact(graph: nx.DiGraph, name: str, version: str, kind: str, **extra: object) -> str:
    node = f"artifact:{name}:{version}"
    attrs: dict[str, object] = {
        "kind": "artifact", "name": name, "version": version, "type": kind,
        "digest": hashlib.md5(node.encode()).hexdigest(), "size": 123_456, "files": 1,
        "path": f"/store/{name}/{version}", "images": [],
    }  # fmt: skip
    attrs.update(extra)
    graph.add_node(node, **attrs)
    return node


def run(graph: nx.DiGraph, n: int, stage: str, **extra: object) -> str:
    node = f"run:{n}"
    attrs: dict[str, object] = {
        "kind": "run", "run": n, "stage": stage, "status": "ok", "fingerprint": "f" * 64,
        "code_digest": "c" * 32, "config": {"seed": 0}, "metrics": {},
        "wandb": {"id": f"abc{n}", "project": "lineage", "entity": "lab", "mode": "offline",
                  "dir": "/tmp/wandb", "synced": n % 2 == 0},
    }  # fmt: skip
    attrs.update(extra)
    graph.add_node(node, **attrs)
    return node


def sweep(members: int) -> nx.DiGraph:
    """dataset -> train #k -> model:vk -> evaluate #(k+members) -> evaluation:vk -> plot."""
    g: nx.DiGraph = nx.DiGraph(focus="artifact:plots:v0")
    dataset = artifact(g, "dataset-digits", "v0", "dataset")
    plot = run(g, 99, "plot")
    g.add_edge(plot, artifact(g, "plots", "v0", "plots"), kind="logged")
    for k in range(members):
        label = f"[train.lr={k / 10}]"
        train = run(g, 2 + k, f"train{label}", config={"lr": k / 10}, metrics={"loss": 1 / (k + 1)})
        model = artifact(g, "model", f"v{k}", "model")
        evaluate = run(g, 2 + members + k, f"evaluate{label}", metrics={"accuracy": k / members})
        evaluation = artifact(g, "evaluation", f"v{k}", "evaluation")
        g.add_edges_from([(dataset, train), (model, evaluate), (evaluation, plot)], kind="used")
        g.add_edges_from([(train, model), (evaluate, evaluation)], kind="logged")
    return g
