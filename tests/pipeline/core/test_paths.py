"""Where things live: the workspace's files under it, and the tool's code in every layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core import paths


def test_every_file_of_a_workspace_is_inside_it(tmp_path: Path) -> None:
    store = paths.store_dir(tmp_path)
    found = [
        paths.lock_file(tmp_path),
        paths.index_file(store),
        paths.locks_dir(store),
        paths.memo_dir(store),
        paths.lock_cache(tmp_path),
        paths.declared_cache(tmp_path),
    ]
    assert all(p.is_relative_to(tmp_path) for p in found)
    assert len(set(found)) == len(found)
    assert paths.lock_file(tmp_path).name == "dvc_free_lock.yaml"


def test_the_tools_sources_are_the_modules_of_every_layer() -> None:
    found = {p.relative_to(paths.TOOL).as_posix() for p in paths.tool_sources()}
    layers = {"core/plan.py", "state/memo.py", "execution/runner.py", "cli/main.py", "spec.py"}
    assert layers <= found
    assert all(name.endswith(".py") for name in found)


def test_the_stages_package_comes_from_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.state import declared

    monkeypatch.delenv(paths.STAGES_ENV, raising=False)
    assert paths.stages_package() == declared.package() == "stages"
    monkeypatch.setenv(paths.STAGES_ENV, "lab_stages")
    assert paths.stages_package() == declared.package() == "lab_stages"
