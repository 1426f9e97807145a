"""One self-contained, offline HTML page drawing an artifact's lineage graph and its details."""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import networkx as nx

from pipeline.cli.layering import layers, natural
from pipeline.core.experiments import Row, from_index
from pipeline.core.overrides import user_config

# The page must open on an offline laptop and never phone home, whatever a value contains.
CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'"
)
CHAR_W, MIN_W, NODE_H, GAP_X, GAP_Y, MARGIN = 8, 110, 52, 56, 26, 16

MARKER = (
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
    'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#6e7781"/></marker></defs>'
)
CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1400px;padding:0 24px 48px}
h1{font-size:24px;margin:20px 0 4px}h2{font-size:18px;margin:0 0 8px}h3{font-size:15px}
h1 code,h2 code{font-size:.95em}.sub{color:#57606a;margin:0 0 16px}.note{color:#cf222e}
.graph{overflow-x:auto;border:1px solid #d0d7de;border-radius:8px;padding:8px;background:#f6f8fa}
.graph svg{display:block;margin:auto;max-width:100%;height:auto}
.edge{fill:none;stroke:#6e7781;stroke-width:1.6}svg text{font:13px monospace;text-anchor:middle}
svg text.small{font-size:11px;fill:#57606a}.node rect,.node ellipse{stroke-width:1.5}
.node.artifact ellipse{fill:#ddf4ff;stroke:#0969da}.node a:hover *{stroke-width:3}
.node.run rect{fill:#fff;stroke:#57606a}.node.run.ok rect{stroke:#1a7f37}
.node.run.failed rect{fill:#ffebe9;stroke:#cf222e}.node.run.running rect{fill:#fff8c5}
.node.focus ellipse,.node.focus rect{fill:#fff1b8;stroke:#bf8700;stroke-width:3.5}
.details{border:1px solid #d0d7de;border-radius:8px;padding:12px 16px;margin:16px 0}
.details.focus{border:3px solid #bf8700}.details:target{box-shadow:0 0 0 3px #54aeff}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0}dt{color:#57606a}
dd{margin:0;overflow-wrap:anywhere}code,pre{font:13px monospace}
pre{background:#f6f8fa;padding:8px;border-radius:6px;overflow-x:auto;margin:0}
table{border-collapse:collapse}.comparison{margin:0 0 16px;overflow-x:auto}
summary{cursor:pointer;margin:6px 0}
td,th{border:1px solid #d0d7de;padding:2px 10px;text-align:left}
.status-failed{color:#cf222e}.status-ok{color:#1a7f37}.status-running{color:#9a6700}
.status-failed,.status-ok,.status-running{font-weight:600}
figure{display:inline-block;margin:8px 16px 0 0}img{max-width:560px;border:1px solid #d0d7de}
"""


def render_html(graph: nx.DiGraph) -> str:
    """The lineage page of ``graph``: an SVG drawing and one details section per node."""
    focus = str(graph.graph["focus"])
    ids = _safe_ids(graph)
    order = [node for layer in layers(graph) for node in layer]
    title = _esc(_label(graph, focus))
    sections = "\n".join(_details(graph, node, ids, node == focus) for node in order)
    runs = sum(_is_run(graph, node) for node in graph)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Lineage of {title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>Lineage of <code>{title}</code></h1>\n"
        f'<p class="sub">{len(graph) - runs} artifact versions, {runs} runs; '
        "click a node for its details.</p>\n"
        f"{_comparison(graph, order, ids)}"
        f'<div class="graph">{_svg(graph, ids, focus)}</div>\n{sections}\n</body>\n</html>\n'
    )


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


_OPEN_ROWS = 12  # a stage's comparison with more runs starts folded


def _comparison(graph: nx.DiGraph, order: list[str], ids: Mapping[str, str]) -> str:
    """Per stage that ran several times here: its runs side by side, with their metrics."""
    runs = sorted((n for n in order if _is_run(graph, n)), key=natural)
    records = [
        {
            "run": graph.nodes[n].get("run"),
            "stage": graph.nodes[n].get("stage", "?"),
            "status": graph.nodes[n].get("status", "?"),
            "config": graph.nodes[n].get("config") or {},
            "metrics": graph.nodes[n].get("metrics") or {},
            "outputs": {},
            "wandb": graph.nodes[n].get("wandb"),
        }
        for n in runs
    ]
    node_of = {r["run"]: n for r, n in zip(records, runs, strict=True)}
    by_stage: dict[str, list[Row]] = {}
    for row in from_index(records):
        by_stage.setdefault(row.stage, []).append(row)
    tables = []
    for stage, rows in by_stage.items():
        metrics = sorted({m for r in rows for m in r.metrics})
        if len(rows) < 2 or not metrics:
            continue
        head = "".join(f"<th>{_esc(m)}</th>" for m in metrics)
        body = []
        for row in rows:
            link = f'<a href="#details-{ids[node_of[row.run]]}">{_esc(stage)} #{row.run}</a>'
            label = row.key.partition("[")[2].rstrip("]").split(",") if "[" in row.key else []
            named = {part.split("=", 1)[0] for part in label}
            apart = [*label, *(f"{k}={_value(v)}" for k, v in row.config.items() if k not in named)]
            cells = "".join(f"<td>{_esc(_number(row.metrics.get(m, '')))}</td>" for m in metrics)
            body.append(
                f"<tr><td>{link}</td><td><code>{_esc(' '.join(apart))}</code></td>{cells}</tr>"
            )
        # Many members: folded (a click opens it), so the graph stays near the top.
        shown = " open" if len(rows) <= _OPEN_ROWS else ""
        tables.append(
            f'<details class="stage"{shown}><summary><b>{_esc(stage)}'
            f"</b>: {len(rows)} runs</summary><table><tr><th>run</th><th>what sets it apart"
            f"</th>{head}</tr>{''.join(body)}</table></details>"
        )
    if not tables:
        return ""
    return f'<section class="comparison"><h2>Runs compared</h2>{"".join(tables)}</section>\n'


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _is_run(graph: nx.DiGraph, node: str) -> bool:
    return bool(graph.nodes[node].get("kind") == "run")


def _safe_ids(graph: nx.DiGraph) -> dict[str, str]:
    # Readable HTML ids; a suffix keeps two node ids that clean to the same text apart.
    ids: dict[str, str] = {}
    for node in sorted(graph, key=str):
        base = re.sub(r"[^A-Za-z0-9.-]", "_", str(node))
        safe, n = base, 1
        while safe in ids.values():
            n += 1
            safe = f"{base}-{n}"
        ids[node] = safe
    return ids


def _label(graph: nx.DiGraph, node: str, sub: bool = False) -> str:
    """The node's name (``train #5``, ``model:v1``) or, with ``sub``, its status or type."""
    attrs = graph.nodes[node]
    if _is_run(graph, node):
        return str(attrs.get("status", "?")) if sub else f"{attrs.get('stage')} #{attrs.get('run')}"
    return str(attrs.get("type", "?")) if sub else f"{attrs.get('name')}:{attrs.get('version')}"


def _layout(graph: nx.DiGraph) -> tuple[dict[str, tuple[int, int, int]], int, int]:
    """Left, top and width of each node box, and the drawing's width and height."""
    columns = layers(graph)
    tallest = max((len(layer) for layer in columns), default=1)
    height = 2 * MARGIN + tallest * NODE_H + (tallest - 1) * GAP_Y
    where: dict[str, tuple[int, int, int]] = {}
    left = MARGIN
    for layer in columns:
        # Each column is as wide as its longest label, so short labels leave no wide gaps.
        chars = max(max(len(_label(graph, n)), len(_label(graph, n, sub=True))) for n in layer)
        width = max(MIN_W, chars * CHAR_W + 28)
        top = (height - len(layer) * NODE_H - (len(layer) - 1) * GAP_Y) // 2
        for row, node in enumerate(layer):
            where[node] = (left, top + row * (NODE_H + GAP_Y), width)
        left += width + GAP_X
    return where, max(left - GAP_X + MARGIN, 2 * MARGIN), height


def _svg(graph: nx.DiGraph, ids: Mapping[str, str], focus: str) -> str:
    where, width, height = _layout(graph)
    edges = []
    for source, target in sorted(graph.edges, key=lambda e: (str(e[0]), str(e[1]))):
        (x1, y1, w1), (x2, y2, _) = where[source], where[target]
        x1, y1, y2 = x1 + w1, y1 + NODE_H // 2, y2 + NODE_H // 2
        mid = (x1 + x2) // 2
        kind = _esc(graph.edges[source, target].get("kind", ""))
        edges.append(
            f'<path class="edge {kind}" d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2 - 1},{y2}" '
            'marker-end="url(#arrow)"/>'
        )
    nodes = [_svg_node(graph, n, ids[n], where[n], n == focus) for n in sorted(where)]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="lineage graph">'
        f"{MARKER}{''.join(edges)}{''.join(nodes)}</svg>"
    )


def _svg_node(
    graph: nx.DiGraph, node: str, safe: str, box: tuple[int, int, int], focus: bool
) -> str:
    x, y, width = box
    cx, cy = x + width // 2, y + NODE_H // 2
    if _is_run(graph, node):
        kind = f"run {_esc(graph.nodes[node].get('status', ''))}"
        shape = f'<rect x="{x}" y="{y}" width="{width}" height="{NODE_H}" rx="10"/>'
    else:
        kind = "artifact"
        shape = f'<ellipse cx="{cx}" cy="{cy}" rx="{width // 2}" ry="{NODE_H // 2}"/>'
    classes = f"node {kind}" + (" focus" if focus else "")
    return (
        f'<g class="{classes}" id="svg-{safe}" data-node="{_esc(node)}">'
        f'<a href="#details-{safe}"><title>{_esc(node)}</title>{shape}'
        f'<text x="{cx}" y="{cy - 2}">{_esc(_label(graph, node))}</text>'
        f'<text class="small" x="{cx}" y="{cy + 15}">{_esc(_label(graph, node, sub=True))}</text>'
        "</a></g>"
    )


def _details(graph: nx.DiGraph, node: str, ids: Mapping[str, str], focus: bool) -> str:
    attrs = graph.nodes[node]
    run = _is_run(graph, node)
    rows = _run_rows(attrs) if run else _artifact_rows(attrs)
    rows.append(("inputs", _links(graph, graph.predecessors(node), ids)))
    rows.append(("outputs", _links(graph, graph.successors(node), ids)))
    body = "<dl>" + "".join(f"<dt>{key}</dt><dd>{value}</dd>" for key, value in rows) + "</dl>"
    if run:
        keys = user_config(attrs.get("config") or {}, attrs.get("overrides", ()))
        config = "\n".join(f"{k}: {_value(v)}" for k, v in sorted(keys.items()))
        body += f"<h3>Config</h3><pre>{_esc(config or '(defaults only)')}</pre>"
        body += f"<h3>Metrics</h3>{_metrics(attrs.get('metrics') or {})}"
    else:
        body += _images(attrs.get("images") or [])
    kind = "run" if run else "artifact"
    classes = f"details {kind}" + (" focus" if focus else "")
    return (
        f'<section id="details-{ids[node]}" class="{classes}" data-node="{_esc(node)}">'
        f"<h2>{kind} <code>{_esc(_label(graph, node))}</code></h2>{body}</section>"
    )


def _run_rows(attrs: Mapping[str, Any]) -> list[tuple[str, str]]:
    status = _esc(attrs.get("status", "?"))
    return [
        ("stage", _esc(attrs.get("stage", "?"))),
        ("status", f'<span class="status-{status}">{status}</span>'),
        ("fingerprint", f"<code>{_esc(attrs.get('fingerprint', ''))}</code>"),
        ("code digest", f"<code>{_esc(attrs.get('code_digest', ''))}</code>"),
        ("W&amp;B run", _wandb(attrs.get("wandb"))),
    ]


def _wandb(record: Mapping[str, Any] | None) -> str:
    if not record:
        return "none"
    where = "/".join(str(record[k]) for k in ("entity", "project") if record.get(k))
    synced = "synced" if record.get("synced") else "not synced"
    return (
        f"<code>{_esc(record.get('id', '?'))}</code> in {_esc(where or '?')}, "
        f"mode {_esc(record.get('mode', '?'))}, {synced}"
    )


def _artifact_rows(attrs: Mapping[str, Any]) -> list[tuple[str, str]]:
    path = attrs.get("path")
    return [
        ("name", _esc(attrs.get("name", "?"))),
        ("version", _esc(attrs.get("version", "?"))),
        ("type", _esc(attrs.get("type", "?"))),
        ("digest", f"<code>{_esc(attrs.get('digest', ''))}</code>"),
        ("size", _esc(_human_size(int(attrs.get("size", 0))))),
        ("files", _esc(attrs.get("files", "?"))),
        ("path", f"<code>{_esc(path)}</code>" if path else '<span class="note">missing</span>'),
    ]


def _links(graph: nx.DiGraph, nodes: Iterable[str], ids: Mapping[str, str]) -> str:
    links = (f'<a href="#details-{ids[n]}">{_esc(_label(graph, n))}</a>' for n in sorted(nodes))
    return ", ".join(links) or "none"


def _metrics(metrics: Mapping[str, Any]) -> str:
    if not metrics:
        return "<p>none</p>"
    cells = [(str(k), f"{v:.6g}" if isinstance(v, float) else str(v)) for k, v in metrics.items()]
    rows = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in sorted(cells))
    return f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>"


def _human_size(size: int) -> str:
    amount, units = float(size), ["B", "KiB", "MiB", "GiB"]
    while amount >= 1024 and len(units) > 1:
        amount, units = amount / 1024, units[1:]
    return f"{size} B" if units[0] == "B" else f"{amount:.1f} {units[0]}"


def _images(paths: Iterable[str]) -> str:
    parts, notes = [], []
    for path in sorted(paths):
        name = _esc(Path(path).name)
        try:
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        except OSError:
            notes.append(f'<p class="note">image <code>{_esc(path)}</code> is missing</p>')
            continue
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{name}">'
            f"<figcaption>{name}</figcaption></figure>"
        )
    return f"<h3>Images</h3>{''.join(parts + notes)}" if parts or notes else ""
