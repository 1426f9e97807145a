"""The store: versions by content, materialised folders, integrity checks, the run cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import store as store_module
from pipeline.digest import file_md5, manifest_digest
from pipeline.errors import StoreError
from pipeline.lock import InputPin
from pipeline.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path)
    yield s
    s.close()


def _stage_output(store: Store, files: dict[str, bytes]) -> Path:
    folder = store.staging()
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


def test_commit_numbers_versions_and_dedups_identical_content(store: Store) -> None:
    a = store.commit(_stage_output(store, {"w.pt": b"one"}), "model", "model")
    b = store.commit(_stage_output(store, {"w.pt": b"two"}), "model", "model")
    again = store.commit(_stage_output(store, {"w.pt": b"one"}), "model", "model")
    assert (a.version, b.version, again.version) == ("v0", "v1", "v0")
    assert again.digest == a.digest
    assert store.versions("model") == ["v0", "v1"]
    assert store.resolve("model", "latest") == InputPin("model", "v0", a.digest)
    assert store.resolve("model", "v1") == InputPin("model", "v1", b.digest)
    assert store.resolve("model", "v9") is None


def test_digest_size_and_file_count_describe_the_content(store: Store) -> None:
    pin = store.commit(_stage_output(store, {"a": b"xy", "d/b": b"z"}), "data", "dataset")
    folder = store.path("data", "v0")
    expected = manifest_digest({rel: file_md5(folder / rel) for rel in ("a", "d/b")})
    assert (pin.digest, pin.size, pin.files, pin.type) == (expected, 3, 2, "dataset")
    assert (folder / "d" / "b").read_bytes() == b"z"


def test_version_files_are_read_only_and_shared_with_the_objects(store: Store) -> None:
    staged = _stage_output(store, {"a": b"xy"})
    store.commit(staged, "data", "dataset")
    store.clean_tmp(staged)  # the runner removes the stage's folder after the commit
    file = store.path("data", "v0") / "a"
    assert file.stat().st_mode & 0o222 == 0
    assert file.stat().st_nlink == 2


def test_intact_sees_a_flipped_byte_and_a_missing_file(store: Store) -> None:
    pin = store.commit(_stage_output(store, {"a": b"xy", "b": b"z"}), "data", "dataset")
    assert store.intact(pin)
    file = store.path("data", "v0") / "b"
    file.chmod(0o644)
    file.write_bytes(b"Z")
    assert not store.intact(pin)
    file.unlink()
    assert not store.intact(pin)


def test_unchanged_files_are_not_hashed_twice(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(store_module, "file_md5", lambda p: calls.append(p) or file_md5(p))
    pin = store.commit(_stage_output(store, {"a": b"xy"}), "data", "dataset")
    assert store.intact(pin)
    assert store.intact(pin)
    assert len(calls) == 1  # hashed once, in the commit


def test_an_empty_output_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match=r"artifact `model` is empty"):
        store.commit(store.staging(), "model", "model")


def test_run_cache_returns_the_last_successful_run(store: Store) -> None:
    pin = store.commit(_stage_output(store, {"a": b"xy"}), "model", "model")
    failed = store.runs.start("train", "fp1", {})
    store.runs.end(failed, None, {})
    assert store.cached("fp1") is None
    ok = store.runs.start("train", "fp1", {"dataset": InputPin("d", "v0", "x")})
    store.runs.end(ok, {"model": pin}, {"acc": 0.5})
    cached = store.cached("fp1")
    assert cached is not None
    assert cached.outputs == {"model": pin}
    assert cached.metrics == {"acc": 0.5}


def test_a_second_store_on_the_same_workspace_sees_the_versions(tmp_path: Path) -> None:
    first, second = Store(tmp_path), Store(tmp_path)
    pin = first.commit(_stage_output(first, {"a": b"1"}), "m", "model")
    assert second.resolve("m", "latest") == InputPin("m", pin.version, pin.digest)
    assert second.commit(_stage_output(second, {"a": b"2"}), "m", "model").version == "v1"
    first.close()
    second.close()
