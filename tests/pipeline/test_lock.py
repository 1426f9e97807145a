"""The lock round-trips exactly, is written only when changed, and names the bad line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core import lock, lockfile, paths
from pipeline.core.errors import LockError

names = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=12)
scalars = (
    st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.none()
    | st.text(max_size=20)
)
configs = st.recursive(
    scalars, lambda inner: st.dictionaries(names, inner, max_size=4), max_leaves=12
)
digests = st.text("0123456789abcdef", min_size=32, max_size=32)
# Artifact names become folders in the store: the lock accepts only safe ones.
artifact_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,11}", fullmatch=True)
inputs = st.builds(
    lock.InputPin, artifact_names, st.from_regex(r"v[0-9]{1,3}", fullmatch=True), digests
)
outputs = st.builds(
    lock.OutputPin,
    artifact_names,
    names,
    st.from_regex(r"v[0-9]{1,3}", fullmatch=True),
    digests,
    st.integers(0, 2**40),
    st.integers(0, 10**6),
)
stage_locks = st.builds(
    lock.StageLock,
    fingerprint=digests,
    code_digest=digests,
    code=st.dictionaries(names, digests, max_size=3),
    config=st.dictionaries(names, configs, max_size=4),
    overrides=st.lists(names, max_size=3).map(tuple),
    inputs=st.dictionaries(names, inputs, max_size=3),
    outputs=st.dictionaries(names, outputs, max_size=3),
    metrics=st.dictionaries(names, scalars, max_size=3),
    environment=st.dictionaries(names, names, max_size=3),
)
locks = st.dictionaries(names, stage_locks, max_size=3).map(
    lambda d: lock.Lock(dict(sorted(d.items())))
)


@given(locks)
def test_round_trip_is_exact_and_text_is_stable(value: lock.Lock) -> None:
    text = lock.dumps(value)
    again = lock.loads(text)
    assert again == value
    assert lock.dumps(again) == text


def _sample() -> lock.Lock:
    entry = lock.StageLock(
        fingerprint="f" * 64,
        code_digest="c" * 64,
        code={"stages/train.py": "abc=="},
        config={"lr": 0.001, "model": {"_target_": "stages.models.cnn"}},
        overrides=("lr=0.001",),
        inputs={"dataset": lock.InputPin("dataset-digits", "v0", "d" * 32)},
        outputs={"model": lock.OutputPin("model", "model", "v1", "e" * 32, 1234, 3)},
        metrics={"val_accuracy": 0.98},
        environment={"python": "3.11.7", "torch": "2.14.1"},
    )
    return lock.Lock({"train": entry})


def test_write_only_when_changed(tmp_path: Path) -> None:
    path = tmp_path / paths.LOCK_NAME
    assert lockfile.write(path, _sample()) is True
    assert lockfile.write(path, _sample()) is False
    assert lockfile.read(path) == _sample()
    assert lockfile.write(path, _sample().without_stage("train")) is True
    assert list(tmp_path.iterdir()) == [path]


def test_missing_or_empty_lock_is_empty(tmp_path: Path) -> None:
    assert lockfile.read(tmp_path / "absent.yaml") == lock.Lock()
    assert lock.loads("") == lock.Lock()


def test_lock_holds_no_times_hosts_or_absolute_paths() -> None:
    text = lock.dumps(_sample())
    assert "/" not in text.replace("stages/train.py", "").replace("stages.models", "")
    assert "&id" not in text


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(LockError, match=r"`dvc_free_lock.yaml:3` is not valid YAML"):
        lock.loads("schema: 1\nstages:\n\ttrain: {}\n")


def test_a_wrong_field_names_its_line_and_path() -> None:
    text = lock.dumps(_sample()).replace("size: 1234", "size: big")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "size: big" in t)
    with pytest.raises(
        LockError, match=rf":{line}`: `stages.train.outputs.model.size` should be an"
    ):
        lock.loads(text)


def test_a_missing_field_is_reported() -> None:
    text = lock.dumps(_sample()).replace("    fingerprint: " + "f" * 64 + "\n", "")
    with pytest.raises(LockError, match=r"`stages.train` should be a mapping with the key `fing"):
        lock.loads(text)


def test_an_unknown_schema_is_refused() -> None:
    with pytest.raises(LockError, match=r"schema 9, this version reads schema 1"):
        lock.loads("schema: 9\nstages: {}\n")


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "../../etc"), ("name", "/abs"), ("name", '"a\\0b"'), ("version", "../v0")],
)
def test_names_and_versions_that_could_leave_the_store_are_refused(field: str, value: str) -> None:
    text = lock.dumps(_sample())
    old = next(line for line in text.splitlines() if line.strip().startswith(f"{field}: "))
    line = text.splitlines().index(old) + 1
    bad = text.replace(old, old.split(":")[0] + f": {value}", 1)
    with pytest.raises(LockError, match=rf":{line}`: `stages\.train\..*\.{field}` should be a"):
        lock.loads(bad)


def test_an_unchanged_lock_loads_from_its_cache_and_a_changed_one_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, cache = tmp_path / paths.LOCK_NAME, tmp_path / "cache" / "lock.json"
    lockfile.write(path, _sample(), cache)
    parsed: list[str] = []
    real = lock.loads
    monkeypatch.setattr(lock, "loads", lambda text, source="": parsed.append(source) or real(text))
    assert lockfile.read(path, cache) == _sample()
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
    entry = _sample().stages["train"]
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
        lockfile.write(path, _sample())
        assert path.stat().st_mode & 0o777 == 0o644  # as the committed lock is, not 0600
        path.chmod(0o640)
        lockfile.write(path, _sample().without_stage("train"))
        assert path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(umask)


def test_the_new_text_is_synced_under_another_name_then_renamed_over_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kill cannot tell a synced file from one in the page cache (a power cut can): the
    # order of the calls is what shows that the rename never comes before the data is down.
    path = tmp_path / paths.LOCK_NAME
    lockfile.write(path, _sample().without_stage("train"))
    old, new = path.read_text(), lock.dumps(_sample())
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
    lockfile.write(path, _sample())
    assert [call[0] for call in calls] == ["fsync", "replace"], calls
    [(_, temporary, synced_text, lock_then), renamed] = calls
    assert temporary != path.name and synced_text == new and lock_then == old
    assert renamed == ("replace", temporary, path.name)
    assert path.read_text() == new


CNN = {"_target_": "stages.models.cnn", "_partial_": True, "channels": [32, 64], "dropout": 0.1}
RESNET = {"_target_": "stages.models.torchvision_model", "_partial_": True, "name": "resnet18"}


def test_a_config_is_shown_in_the_keys_a_user_types() -> None:
    config = {"_target_": "stages.train.train", "_convert_": "all", "lr": 0.1, "model": CNN}
    assert lock.user_config(config) == {
        "lr": 0.1,
        "model": "cnn",
        "model.channels": [32, 64],
        "model.dropout": 0.1,
    }
    # The group option chosen, where an override chose it; else the name of what it builds.
    assert lock.user_config({"model": RESNET}, ["model=resnet18"])["model"] == "resnet18"
    assert lock.user_config({"model": RESNET}, ["lr=1"])["model"] == "torchvision_model"


def test_a_changed_option_is_one_change_and_its_keys_follow_from_it() -> None:
    old = lock.user_config({"lr": 0.1, "model": CNN})
    new = lock.user_config({"lr": 0.2, "model": RESNET}, ["model=resnet18"])
    assert lock.config_changes(old, new, "(unset)") == [
        ("lr", 0.1, 0.2),
        ("model", "cnn", "resnet18"),
    ]
    wider = lock.user_config({"model": {**CNN, "dropout": 0.2}})
    assert lock.config_changes(old, {**wider, "lr": 0.1}) == [("model.dropout", 0.1, 0.2)]
