"""The lock file on disk: written atomically and only when changed, read through its caches."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from pipeline.core import lock, lockfile, paths
from pipeline.core.errors import LockError
from tests.pipeline.core.locks import sample


def test_write_only_when_changed(tmp_path: Path) -> None:
    path = tmp_path / paths.LOCK_NAME
    assert lockfile.write(path, sample()) is True
    assert lockfile.write(path, sample()) is False
    assert lockfile.read(path) == sample()
    assert lockfile.write(path, sample().without_stage("train")) is True
    assert list(tmp_path.iterdir()) == [path]


def test_an_unchanged_lock_loads_from_its_cache_and_a_changed_one_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, cache = tmp_path / paths.LOCK_NAME, tmp_path / "cache" / "lock.json"
    lockfile.write(path, sample(), cache)
    parsed: list[str] = []
    real = lock.loads
    monkeypatch.setattr(lock, "loads", lambda text, source="": parsed.append(source) or real(text))
    assert lockfile.read(path, cache) == sample()
    assert parsed == []  # from the cache
    edited = path.read_text().replace("size: 1234", "size: 13")
    path.write_text(edited)
    assert lockfile.read(path, cache).stages["train"].outputs["model"].size == 13
    assert parsed == [paths.LOCK_NAME]  # the text changed: parsed, then cached again
    assert lockfile.read(path, cache).stages["train"].outputs["model"].size == 13
    assert parsed == [paths.LOCK_NAME]


def test_update_keeps_every_other_block_as_the_yaml_has_it(tmp_path: Path) -> None:
    path, cache = tmp_path / paths.LOCK_NAME, tmp_path / "lock.json"
    a, b = lock.StageLock("fa", "d", {}, {"lr": 1}), lock.StageLock("fb", "d", {}, {"x": 2})
    lockfile.write(path, lock.Lock({"a": a, "b": b}), cache)
    saved = json.loads(cache.read_text())
    block = json.loads(saved["blocks"]["b"])
    block["config"]["x"] = 99  # planted: passes every shape check
    saved["blocks"]["b"] = json.dumps(block)
    cache.write_text(json.dumps(saved))
    new_a = lock.StageLock("fa2", "d", {}, {"lr": 3})
    written = lockfile.update(path, "a", new_a, cache)
    assert written == lock.Lock({"a": new_a, "b": b}) == lockfile.read(path)


def test_a_cached_parse_that_fails_the_checks_is_ignored(tmp_path: Path) -> None:
    path, cache = tmp_path / paths.LOCK_NAME, tmp_path / "lock.json"
    pin = lock.OutputPin("model", "model", "v0", "d", 1, 1)
    good = lock.Lock({"a": lock.StageLock("fa", "d", {}, {}, outputs={"model": pin})})
    lockfile.write(path, good, cache)
    saved = json.loads(cache.read_text())
    block = json.loads(saved["blocks"]["a"])
    for bad in ("../../etc", 5, None):
        block["outputs"]["model"]["name"] = bad
        saved["blocks"]["a"] = json.dumps(block)
        cache.write_text(json.dumps(saved))
        assert lockfile.read(path, cache) == good
    for planted in ("{", "[1]", "not json"):
        saved["blocks"]["a"] = planted
        cache.write_text(json.dumps(saved))
        assert lockfile.read(path, cache) == good
    cache.write_text('{"md5": 1, "lock": []}')
    assert lockfile.read(path, cache) == good


def _sweep_lock(members: int) -> lock.Lock:
    """A sweep's lock: one block per member, and one key too long for a plain YAML key."""
    entry = sample().stages["train"]
    stages = {f"train[train.lr={i},train.seed=0]": entry for i in range(members)}
    stages["plot[train.lr=" + "|".join(str(i) for i in range(60)) + "]"] = entry
    return lock.Lock(stages)


def test_a_big_lock_the_cache_lacks_is_read_block_by_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lockfile, "BY_BLOCK", 0)  # every lock counts as big
    path, cache = tmp_path / paths.LOCK_NAME, tmp_path / "lock.json"
    sweep = _sweep_lock(30)
    lockfile.write(path, sweep)  # written without the cache: as `git checkout` leaves it
    whole: list[str] = []
    real = lock.loads
    monkeypatch.setattr(lock, "loads", lambda text, source="": whole.append(source) or real(text))
    found = lockfile.read(path, cache)
    assert (
        found.stages["train[train.lr=3,train.seed=0]"]
        == sweep.stages["train[train.lr=3,train.seed=0]"]
    )
    assert whole == []  # one block parsed, not the file
    assert found == sweep  # every block, the long key's among them
    assert whole == []


def test_a_broken_block_is_reported_with_its_line_when_it_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lockfile, "BY_BLOCK", 0)
    path, cache = tmp_path / paths.LOCK_NAME, tmp_path / "lock.json"
    lockfile.write(path, _sweep_lock(3))
    head, _, tail = path.read_text().partition("  train[train.lr=0,train.seed=0]:\n")
    tail = tail.replace("      val_accuracy: 0.98\n", "      val_accuracy: [0.98\n", 1)
    path.write_text(f"{head}  train[train.lr=0,train.seed=0]:\n{tail}")
    found = lockfile.read(path, cache)
    assert found.stages["train[train.lr=2,train.seed=0]"].metrics == {"val_accuracy": 0.98}
    with pytest.raises(LockError, match=rf"`{paths.LOCK_NAME}:\d+` is not valid YAML"):
        found.stages["train[train.lr=0,train.seed=0]"]


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t.replace("schema: 1\n", "schema: 1 # reviewed\n"),  # another first line
        lambda t: t.replace("  train[train.lr=1,", "  'train[train.lr=1,"),  # a quoted key
        lambda t: t + t.split("stages:\n", 1)[1],  # every stage twice
    ],
)
def test_a_lock_not_in_the_written_layout_is_parsed_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit
) -> None:
    monkeypatch.setattr(lockfile, "BY_BLOCK", 0)
    path = tmp_path / paths.LOCK_NAME
    lockfile.write(path, _sweep_lock(3))
    path.write_text(edit(path.read_text()))
    try:
        expected = lock.loads(path.read_text())
    except LockError as exc:
        with pytest.raises(LockError, match=str(exc)[:20]):
            lockfile.read(path, tmp_path / "lock.json")
    else:
        assert lockfile.read(path, tmp_path / "lock.json") == expected


def test_the_lock_gets_the_permissions_a_new_file_gets_or_keeps_its_own(tmp_path: Path) -> None:
    path = tmp_path / paths.LOCK_NAME
    umask = os.umask(0o022)
    try:
        lockfile.write(path, sample())
        assert path.stat().st_mode & 0o777 == 0o644  # as the committed lock is, not 0600
        path.chmod(0o640)
        lockfile.write(path, sample().without_stage("train"))
        assert path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(umask)


def test_the_new_text_is_synced_under_another_name_then_renamed_over_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kill cannot tell a synced file from one in the page cache (a power cut can): the
    # order of the calls is what shows that the rename never comes before the data is down.
    path = tmp_path / paths.LOCK_NAME
    lockfile.write(path, sample().without_stage("train"))
    old, new = path.read_text(), lock.dumps(sample())
    calls: list[tuple[str, ...]] = []
    fsync, replace = os.fsync, os.replace

    def spy_fsync(fd: int) -> None:
        synced = Path(os.readlink(f"/proc/self/fd/{fd}"))
        calls.append(("fsync", synced.name, synced.read_text(), path.read_text()))
        fsync(fd)

    def spy_replace(src: str, dst: str) -> None:
        calls.append(("replace", Path(src).name, Path(dst).name))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    lockfile.write(path, sample())
    assert [call[0] for call in calls] == ["fsync", "replace"], calls
    [(_, temporary, synced_text, lock_then), renamed] = calls
    assert temporary != path.name and synced_text == new and lock_then == old
    assert renamed == ("replace", temporary, path.name)
    assert path.read_text() == new


def test_a_block_its_cache_cannot_give_back_leaves_the_lock_written_and_no_cache(
    tmp_path: Path,
) -> None:
    path, cache = tmp_path / paths.LOCK_NAME, tmp_path / "lock.json"
    entry = sample().stages["train"]
    odd = lock.Lock({"train": dataclasses.replace(entry, environment={"cuda": 12})})  # type: ignore[dict-item]
    assert lockfile.write(path, odd, cache) is True
    assert path.is_file() and not cache.exists()
