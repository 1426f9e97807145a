"""The declarations cache answers only while the sources declare what it holds."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.core.paths import STORE_DIR
from pipeline.spec import Output
from pipeline.state import declared

TASK = """
from pipeline.spec import StageSpec


def make(out, size: int = 3) -> dict:
    return {"size": size}


SPEC = StageSpec(name="make", task=make, config=None, logs=())
"""


def _old(path: Path, text: str) -> None:
    """Write a source as it was a minute ago (nothing modified during a command is trusted)."""
    path.write_text(text, encoding="utf-8")
    past = time.time_ns() - 60_000_000_000
    os.utime(path, ns=(past, past))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace with a store and a stages package `decl_pkg` of one stage."""
    package = tmp_path / "code" / "decl_pkg"
    package.mkdir(parents=True)
    _old(package / "__init__.py", "STAGES = ()\n")
    _old(package / "make.py", TASK)
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    monkeypatch.setenv("PIPELINE_STAGES", "decl_pkg")
    monkeypatch.delitem(sys.modules, "decl_pkg", raising=False)
    workspace = tmp_path / "ws"
    (workspace / STORE_DIR).mkdir(parents=True)
    return workspace


SPEC = SimpleNamespace(
    name="make",
    module="decl_pkg.make",
    uses=(),
    logs=(Output("thing", "dataset", "thing-{size}"),),
    fan_in=(),
    groups={"size": {"small": object(), "large": object()}},
)


def _remember(workspace: Path, configs: dict[str, object] | None = None) -> bool:
    caches = declared.Declarations([], dict(configs or {"k": [{"size": 3}, {}]}), {}, {})
    return declared.remember(workspace, [SPEC], caches, time.time_ns())


def _source(workspace: Path) -> Path:
    return workspace.parent / "code" / "decl_pkg" / "make.py"


def test_what_was_remembered_is_recalled(project: Path) -> None:
    assert _remember(project)
    found = declared.recall(project)
    assert found is not None
    assert found.stages == [declared.declared(SPEC)]
    assert found.stages[0].logs[0].artifact_name({"size": "small"}) == "thing-small"
    assert sorted(found.stages[0].groups["size"]) == ["large", "small"]
    assert found.configs == {"k": [{"size": 3}, {}]}


def test_an_edit_inside_a_function_keeps_the_cache(project: Path) -> None:
    _remember(project)
    _source(project).write_text(TASK.replace('{"size": size}', '{"size": size * 2}'))
    assert declared.recall(project) is not None


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s.replace("size: int = 3", "size: int = 4"),  # a default
        lambda s: s.replace('name="make"', 'name="made"'),  # the spec
        lambda s: s + "\nEXTRA = 1\n",  # a module-level statement
        lambda s: s + "\ndef broken(:\n",  # no longer parses
    ],
)
def test_a_declaration_edit_voids_it(project: Path, edit) -> None:
    _remember(project)
    _source(project).write_text(edit(TASK))
    assert declared.recall(project) is None


def test_a_new_module_in_the_package_voids_it(project: Path) -> None:
    _remember(project)
    (_source(project).parent / "more.py").write_text("X = 1\n")
    assert declared.recall(project) is None


def test_another_stages_package_voids_it(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _remember(project)
    monkeypatch.setenv("PIPELINE_STAGES", "stages")
    assert declared.recall(project) is None


@pytest.mark.parametrize(
    "text", ["", "{", "[]", '{"stages": 3}', '{"stages": [], "outlines": {}}', "null"]
)
def test_a_damaged_or_planted_cache_is_ignored(project: Path, text: str) -> None:
    _remember(project)
    path = project / STORE_DIR / "declared.json"
    path.write_text(text)
    assert declared.recall(project) is None


def test_a_planted_outline_cannot_vouch_for_edited_code(project: Path) -> None:
    _remember(project)
    path = project / STORE_DIR / "declared.json"
    data = json.loads(path.read_text())
    _source(project).write_text(TASK.replace("size: int = 3", "size: int = 4"))
    for item in data["outlines"].values():
        item[0] = "planted"  # an MD5 that matches nothing: the file is outlined again
    path.write_text(json.dumps(data))
    assert declared.recall(project) is None


def test_nothing_is_written_without_a_store_or_after_a_fresh_edit(project: Path) -> None:
    (project / STORE_DIR).rmdir()
    assert not _remember(project)
    assert not (project / STORE_DIR).exists()  # bad input never creates a store
    (project / STORE_DIR).mkdir()
    _source(project).write_text(TASK)  # modified while the command ran
    assert not _remember(project)
    assert declared.recall(project) is None


def test_values_that_json_would_change_are_not_kept(project: Path) -> None:
    configs = {"ok": [{"lr": 0.1, "n": 1}, {}], "tuple": [{"x": (1, 2)}, {}], "nan": [float("nan")]}
    _remember(project, configs)
    found = declared.recall(project)
    assert found is not None
    assert set(found.configs) == {"ok", "nan"}


def test_an_edit_to_the_tools_own_code_in_any_layer_answers_afresh(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tool = tmp_path / "tool"
    (tool / "core").mkdir(parents=True)
    _old(tool / "core" / "plan.py", "X = 1\n")
    monkeypatch.setattr(declared, "TOOL", tool)
    monkeypatch.setattr(declared, "tool_sources", lambda: sorted(tool.rglob("*.py")))
    _remember(project)
    assert declared.recall(project) is not None
    _old(tool / "core" / "plan.py", "X = 2\n")
    assert declared.recall(project) is None
