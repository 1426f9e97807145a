"""The no-op memo: an answer is replayed only while every watched file is unchanged."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pipeline.core import paths
from pipeline.state import memo


def _old(path: Path, text: str) -> Path:
    """A file last modified a minute ago (the memo trusts nothing modified during a command)."""
    path.write_text(text)
    past = time.time_ns() - 60_000_000_000
    os.utime(path, ns=(past, past))
    return path


def test_an_answer_is_replayed_until_a_watched_file_changes(tmp_path: Path) -> None:
    watched = _old(tmp_path / "train.py", "a")
    assert memo.remember(tmp_path, ["status"], "fresh\n", [watched], time.time_ns())
    assert memo.recall(tmp_path, ["status"]) == "fresh\n"
    assert memo.recall(tmp_path, ["status", "--json"]) is None  # another command
    watched.write_text("b")
    assert memo.recall(tmp_path, ["status"]) is None


def test_a_file_that_appears_or_vanishes_voids_the_answer(tmp_path: Path) -> None:
    missing, present = tmp_path / "later.py", _old(tmp_path / "now.py", "x")
    memo.remember(tmp_path, ["run"], "ok\n", [missing, present], time.time_ns())
    assert memo.recall(tmp_path, ["run"]) == "ok\n"
    missing.write_text("")
    assert memo.recall(tmp_path, ["run"]) is None
    missing.unlink()
    present.unlink()
    assert memo.recall(tmp_path, ["run"]) is None


def test_nothing_is_recorded_when_a_file_changed_while_the_command_ran(tmp_path: Path) -> None:
    started = time.time_ns()
    changed = tmp_path / "lock.yaml"
    changed.write_text("written during the command")
    assert not memo.remember(tmp_path, ["status"], "fresh\n", [changed], started)
    assert memo.recall(tmp_path, ["status"]) is None


def test_a_change_to_the_index_voids_every_answer(tmp_path: Path) -> None:
    memo.touch(tmp_path)
    stamp = memo.stamp(tmp_path)
    past = time.time_ns() - 60_000_000_000
    os.utime(stamp, ns=(past, past))
    memo.remember(tmp_path, ["status"], "fresh\n", [stamp], time.time_ns())
    assert memo.recall(tmp_path, ["status"]) == "fresh\n"
    memo.touch(tmp_path)  # what the store does after each transaction
    assert memo.recall(tmp_path, ["status"]) is None


def test_the_stages_package_is_part_of_the_question(tmp_path: Path, monkeypatch) -> None:
    memo.remember(tmp_path, ["status"], "fresh\n", [], time.time_ns())
    monkeypatch.setenv("PIPELINE_STAGES", "other_project")
    assert memo.recall(tmp_path, ["status"]) is None


def test_a_touched_source_file_still_vouches_while_its_bytes_are_the_same(tmp_path: Path) -> None:
    store = tmp_path / ".pipeline"
    store.mkdir()
    code = _old(tmp_path / "train.py", "lr = 0.1\n")
    memo.remember(store, ["status"], "fresh\n", [code], time.time_ns())
    code.touch()  # new mtime, same bytes: the answer cannot differ
    assert memo.recall(store, ["status"]) == "fresh\n"
    code.write_text("lr = 0.2\n")
    assert memo.recall(store, ["status"]) is None


def test_the_stamp_is_checked_by_its_stat_alone(tmp_path: Path) -> None:
    store = tmp_path / ".pipeline"
    store.mkdir()
    memo.touch(store)
    stamp = memo.stamp(store)
    past = time.time_ns() - 60_000_000_000
    os.utime(stamp, ns=(past, past))
    memo.remember(store, ["status"], "fresh\n", [stamp], time.time_ns())
    memo.touch(store)  # the same (empty) bytes, but the index changed
    assert memo.recall(store, ["status"]) is None


def test_a_copied_workspace_checks_its_own_files(tmp_path: Path) -> None:
    import shutil

    original = tmp_path / "ws"
    (original / ".pipeline").mkdir(parents=True)
    data = original / ".pipeline" / "artifacts" / "model" / "v0"
    data.mkdir(parents=True)
    _old(data / "weights.pt", "w")
    memo.remember(
        original / ".pipeline", ["status"], "fresh\n", [data / "weights.pt"], time.time_ns()
    )
    copy = tmp_path / "ws2"
    shutil.copytree(original, copy, copy_function=shutil.copy2)  # as `cp -a`: new inodes
    assert memo.recall(copy / ".pipeline", ["status"]) is None  # its own files: new inodes
    (copy / ".pipeline" / "artifacts" / "model" / "v0" / "weights.pt").unlink()
    assert memo.recall(original / ".pipeline", ["status"]) == "fresh\n"
    assert memo.recall(copy / ".pipeline", ["status"]) is None


def test_a_damaged_or_planted_memo_is_ignored(tmp_path: Path) -> None:
    store = tmp_path / ".pipeline"
    store.mkdir()
    memo.remember(store, ["status"], "fresh\n", [], time.time_ns())
    (target,) = (store / "memo").glob("*.json")
    for planted in ('{"watched": 3, "output": "x"}', '{"watched": [[1]]}', "[]", "{"):
        target.write_text(planted)
        assert memo.recall(store, ["status"]) is None


def test_an_answer_depends_on_the_index_its_stamp_and_the_tools_code_in_every_layer(
    tmp_path: Path,
) -> None:
    store, lock = tmp_path / ".pipeline", tmp_path / "dvc_free_lock.yaml"
    folder = store / "artifacts" / "model" / "v0"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "w.pt").write_bytes(b"1")
    found = set(memo.dependencies(store, [lock], [folder]))
    assert {lock, folder, folder / "sub", folder / "sub" / "w.pt"} <= found
    assert {paths.index_file(store), memo.stamp(store)} <= found
    assert paths.TOOL / "core" / "plan.py" in found  # an edit to the tool answers afresh
