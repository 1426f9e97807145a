"""The lineage page: one offline HTML file that real Chromium renders without a request."""

from __future__ import annotations

import itertools
import re
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path

import networkx as nx
import pytest

from pipeline.cli.report import CSP, render_html
from tests.browser import needs_chromium, render, screenshot
from tests.pipeline.cli.graphs import artifact, run, sweep


def _png(path: Path, width: int, height: int, rgb: tuple[int, int, int]) -> Path:
    """A valid PNG drawn by hand: a colour fading to white, left to right."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes(c + (255 - c) * x // width for c in rgb) for x in range(width))
        for _ in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture
def graph(tmp_path: Path) -> nx.DiGraph:
    """prepare_data -> dataset -> train -> model -> evaluate -> evaluation -> plot -> plots."""
    images = [
        str(_png(tmp_path / "confusion.png", 160, 120, (9, 105, 218))),
        str(_png(tmp_path / "loss.png", 160, 120, (26, 127, 55))),
        str(tmp_path / "gone.png"),
    ]
    g: nx.DiGraph = nx.DiGraph(focus="artifact:model:v1")
    chain = [
        run(g, 1, "prepare_data"),
        artifact(g, "dataset-digits", "v0", "dataset"),
        run(g, 5, "train", config={"optim": {"lr": 0.01, "note": "<script>alert(1)</script>"}},
             metrics={"loss": 0.123456789, "epochs": 3}),
        artifact(g, "model", "v1", "model", size=5_000_000),
        run(g, 6, "evaluate", metrics={"accuracy": 0.97}, wandb=None),
        artifact(g, "evaluation", "v1", "evaluation", path=None),
        run(g, 7, "plot"),
        artifact(g, "plots", "v1", "plots", images=images, files=2),
    ]  # fmt: skip
    for source, target in itertools.pairwise(chain):
        g.add_edge(source, target, kind="logged" if source.startswith("run:") else "used")
    failed = run(g, 4, "train", status="failed")
    g.add_edge("artifact:dataset-digits:v0", failed, kind="used")
    return g


class _Dom(HTMLParser):
    """The nodes, details sections and image sources found in a DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.groups: list[str] = []
        self.sections: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {key: value or "" for key, value in attrs}
        classes = found.get("class", "").split()
        if tag == "g" and "node" in classes:
            self.groups.append(found["data-node"])
        elif tag == "section" and "details" in classes:
            self.sections.append(found["data-node"])
        elif tag == "img":
            self.images.append(found["src"])


def _safe(node: str) -> str:
    return node.replace(":", "_")


def test_every_node_has_an_svg_group_and_a_details_section(graph: nx.DiGraph) -> None:
    page = render_html(graph)
    for node in graph:
        group = re.search(rf'<g class="node (run|artifact)[^"]*" id="svg-{_safe(node)}"', page)
        assert group, node
        assert f'data-node="{node}"' in page
        assert f'<a href="#details-{_safe(node)}">' in page
        assert re.search(rf'<section id="details-{_safe(node)}" class="details', page)
    assert page.count('class="node ') == graph.number_of_nodes()
    assert page.count('<path class="edge') == graph.number_of_edges()
    assert "train #5" in page and "dataset-digits:v0" in page and "train #4" in page


def test_the_focus_is_named_and_highlighted(graph: nx.DiGraph) -> None:
    page = render_html(graph)
    assert "<h1>Lineage of <code>model:v1</code></h1>" in page
    assert page.count(" focus") == 2  # the SVG node and its details section
    assert 'class="node artifact focus" id="svg-artifact_model_v1"' in page
    assert 'class="details artifact focus" data-node="artifact:model:v1"' in page


def test_details_show_runs_and_artifacts(graph: nx.DiGraph) -> None:
    page = render_html(graph)
    assert "f" * 64 in page and "c" * 32 in page
    assert "<code>abc5</code> in lab/lineage, mode offline, not synced" in page
    assert "<code>abc6</code>" not in page  # evaluate has no W&B record
    assert '<span class="status-failed">failed</span>' in page
    assert "<td>loss</td><td>0.123457</td>" in page
    assert "4.8 MiB" in page and "120.6 KiB" in page
    assert '<span class="note">missing</span>' in page  # evaluation:v1 has no path
    assert page.count('<img src="data:image/png;base64,iVBORw0KGgo') == 2
    assert "gone.png</code> is missing" in page


def test_the_page_is_deterministic_and_escapes_user_values(graph: nx.DiGraph) -> None:
    page = render_html(graph)
    assert page == render_html(graph.copy())
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_page_loads_nothing_from_the_network(graph: nx.DiGraph) -> None:
    graph.nodes["run:5"]["config"]["url"] = 'https://cdn.example.com/x.js" src="http://evil'
    page = render_html(graph)
    assert "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline';" in page
    for forbidden in ('src="http', 'href="http', "<link", "<script", "url(http", "@import"):
        assert forbidden not in page
    # Besides the user's values, the only URL is the SVG namespace, which is never fetched.
    assert sorted(set(re.findall(r"https?://[^\s\"'<&\\]+", page))) == [
        "http://evil",
        "http://www.w3.org/2000/svg",
        "https://cdn.example.com/x.js",
    ]
    # The user's URLs are text in the config, which is in the keys the user types.
    assert "<pre>optim.lr: 0.01\noptim.note: &lt;script&gt;" in page


def test_a_missing_focus_raises(graph: nx.DiGraph) -> None:
    del graph.graph["focus"]
    with pytest.raises(KeyError, match="focus"):
        render_html(graph)


@needs_chromium
def test_chromium_renders_every_node_without_a_request(graph: nx.DiGraph, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(graph), encoding="utf-8")
    rendered = render(page, tmp_path)
    assert rendered.requests == []
    dom = _Dom()
    dom.feed(rendered.dom)
    assert sorted(dom.groups) == sorted(dom.sections) == sorted(graph)
    assert [src[:33] for src in dom.images] == ["data:image/png;base64,iVBORw0KGgo"] * 2
    shot = tmp_path / "report-shot.png"
    screenshot(page, shot, tmp_path)
    assert shot.read_bytes().startswith(b"\x89PNG")


LEAKY = '<!DOCTYPE html>{head}<p>leaky</p><img src="http://127.0.0.1:9/x.png">'


@needs_chromium
def test_chromium_reports_a_page_that_makes_a_request(tmp_path: Path) -> None:
    # Nothing listens on port 9 of this machine: the request is made, fails, and is seen.
    page = tmp_path / "leaky.html"
    page.write_text(LEAKY.format(head=""))
    rendered = render(page, tmp_path)
    assert "<p>leaky</p>" in rendered.dom
    assert rendered.requests == ["http://127.0.0.1:9/x.png"]


@needs_chromium
def test_the_report_policy_blocks_that_request(tmp_path: Path) -> None:
    page = tmp_path / "guarded.html"
    page.write_text(
        LEAKY.format(head=f'<meta http-equiv="Content-Security-Policy" content="{CSP}">')
    )
    rendered = render(page, tmp_path)
    assert "<p>leaky</p>" in rendered.dom
    assert rendered.requests == []


def test_node_ids_that_clean_alike_get_distinct_html_ids() -> None:
    g: nx.DiGraph = nx.DiGraph(focus="artifact:a:b:v0")
    artifact(g, "a:b", "v0", "data")
    artifact(g, "a_b", "v0", "data")
    page = render_html(g)
    assert 'id="svg-artifact_a_b_v0"' in page and 'id="svg-artifact_a_b_v0-2"' in page
    assert 'id="details-artifact_a_b_v0-2"' in page


def test_runs_are_compared_at_the_top_by_what_sets_them_apart() -> None:
    page = render_html(sweep(3))
    top = page.index('<section class="comparison">')
    assert top < page.index('<div class="graph">')
    table = page[top : page.index("</section>", top)]
    # One table per stage, not per member; open while short, folded when many.
    assert '<details class="stage" open><summary><b>train</b>: 3 runs</summary>' in table
    assert '<details class="stage" open><summary><b>evaluate</b>: 3 runs</summary>' in table
    many = render_html(sweep(13))
    assert '<details class="stage"><summary><b>train</b>: 13 runs</summary>' in many
    assert '<a href="#details-run_3">train #3</a></td><td><code>train.lr=0.1</code>' in table
    assert "<th>accuracy</th>" in table and "_target_" not in page
