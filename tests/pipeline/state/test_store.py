"""The store: versions by content, materialised folders, integrity checks, the run cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core import digest
from pipeline.core.digest import file_md5, manifest_digest
from pipeline.core.errors import StoreError
from pipeline.core.lock import InputPin
from pipeline.state.store import Store
from tests.files import stage_output


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path)
    yield s
    s.close()


def test_commit_numbers_versions_and_dedups_identical_content(store: Store) -> None:
    a = store.commit(stage_output(store, {"w.pt": b"one"}), "model", "model")
    b = store.commit(stage_output(store, {"w.pt": b"two"}), "model", "model")
    again = store.commit(stage_output(store, {"w.pt": b"one"}), "model", "model")
    assert (a.version, b.version, again.version) == ("v0", "v1", "v0")
    assert again.digest == a.digest
    assert store.versions("model") == ["v0", "v1"]
    # `latest` is the newest version, as on W&B: committing old content again moves nothing.
    assert store.resolve("model", "latest") == InputPin("model", "v1", b.digest)
    assert store.resolve("model", "v1") == InputPin("model", "v1", b.digest)
    assert store.resolve("model", "v9") is None


def test_commit_version_says_whether_the_version_is_new(store: Store) -> None:
    first, new = store.commit_version(stage_output(store, {"w.pt": b"one"}), "model", "model")
    again, new_again = store.commit_version(stage_output(store, {"w.pt": b"one"}), "model", "m")
    assert (first.version, new, again.version, new_again) == ("v0", True, "v0", False)


def test_a_pulled_version_keeps_the_number_the_lock_pins(store: Store) -> None:
    pin, new = store.commit_version(stage_output(store, {"w": b"3"}), "model", "model", "v3")
    assert (pin.version, new) == ("v3", True)
    assert store.versions("model") == ["v3"]
    assert store.resolve("model", "latest") == InputPin("model", "v3", pin.digest)
    # Next local content goes after it; a number taken by other content is refused.
    assert store.commit(stage_output(store, {"w": b"4"}), "model", "model").version == "v4"
    with pytest.raises(StoreError, match=r"`model` v4 in this store holds other content"):
        store.commit_version(stage_output(store, {"w": b"5"}), "model", "model", "v4")
    with pytest.raises(StoreError, match=r"this content is `v3` in the store, not `v1`"):
        store.commit_version(stage_output(store, {"w": b"3"}), "model", "model", "v1")
    assert store.versions("model") == ["v3", "v4"]


def test_digest_size_and_file_count_describe_the_content(store: Store) -> None:
    pin = store.commit(stage_output(store, {"a": b"xy", "d/b": b"z"}), "data", "dataset")
    folder = store.path("data", "v0")
    expected = manifest_digest({rel: file_md5(folder / rel) for rel in ("a", "d/b")})
    assert (pin.digest, pin.size, pin.files, pin.type) == (expected, 3, 2, "dataset")
    assert (folder / "d" / "b").read_bytes() == b"z"


def test_version_files_are_read_only_and_shared_with_the_objects(store: Store) -> None:
    staged = stage_output(store, {"a": b"xy"})
    store.commit(staged, "data", "dataset")
    store.clean_tmp(staged)  # the runner removes the stage's folder after the commit
    file = store.path("data", "v0") / "a"
    assert file.stat().st_mode & 0o222 == 0
    assert file.stat().st_nlink == 2


def test_intact_sees_a_flipped_byte_and_a_missing_file(store: Store) -> None:
    pin = store.commit(stage_output(store, {"a": b"xy", "b": b"z"}), "data", "dataset")
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
    monkeypatch.setattr(digest, "file_md5", lambda p: calls.append(p) or file_md5(p))
    pin = store.commit(stage_output(store, {"a": b"xy"}), "data", "dataset")
    assert store.intact(pin)
    assert store.intact(pin)
    assert len(calls) == 1  # hashed once, in the commit


def test_an_empty_output_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match=r"artifact `model` is empty"):
        store.commit(store.staging(), "model", "model")


def test_run_cache_returns_the_last_successful_run(store: Store) -> None:
    pin = store.commit(stage_output(store, {"a": b"xy"}), "model", "model")
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
    pin = first.commit(stage_output(first, {"a": b"1"}), "m", "model")
    assert second.resolve("m", "latest") == InputPin("m", pin.version, pin.digest)
    assert second.commit(stage_output(second, {"a": b"2"}), "m", "model").version == "v1"
    first.close()
    second.close()


def test_a_link_or_special_file_in_a_stage_output_is_refused(store: Store, tmp_path: Path) -> None:
    folder = stage_output(store, {"a": b"1"})
    (folder / "escape").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StoreError, match=r"artifact `m`: `escape` is a link or special file"):
        store.commit(folder, "m", "model")
    assert store.versions("m") == []


@pytest.mark.parametrize("name", ["../x", "a/b", "/abs", "..", "a\0b", ""])
def test_names_that_could_leave_the_store_are_refused(store: Store, name: str) -> None:
    with pytest.raises(StoreError, match=r"cannot be in the store"):
        store.path(name, "v0")
    with pytest.raises(StoreError, match=r"cannot be in the store"):
        store.path("model", name)


def test_a_folder_left_by_a_crash_before_the_index_commit_is_replaced(store: Store) -> None:
    orphan = store.path("m", "v0")  # renamed into place, then the process died
    orphan.mkdir(parents=True)
    (orphan / "a").write_bytes(b"left over")
    pin = store.commit(stage_output(store, {"a": b"new"}), "m", "model")
    assert pin.version == "v0"
    assert (orphan / "a").read_bytes() == b"new"
    assert store.verify(pin) is None


def test_recommitting_repairs_a_damaged_version_and_its_object(store: Store) -> None:
    pin = store.commit(stage_output(store, {"a": b"good"}), "m", "model")
    file = store.path("m", "v0") / "a"
    file.chmod(0o644)
    file.write_bytes(b"evil")  # through the hard link: the object is damaged too
    assert store.damage(pin) == "corrupt a (content differs from its digest)"
    again = store.commit(stage_output(store, {"a": b"good"}), "m", "model")
    assert again == pin
    assert file.read_bytes() == b"good"
    assert store.verify(pin) is None


def test_leftovers_of_dead_processes_are_cleaned_and_live_ones_kept(tmp_path: Path) -> None:
    first = Store(tmp_path)
    mine = first.staging()  # this process is alive
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    host = mine.name.rsplit("-", 2)[0]
    abandoned = tmp_path / ".pipeline" / "tmp" / f"{host}-{dead.stdout.strip()}-abc"
    abandoned.mkdir()
    other_host = tmp_path / ".pipeline" / "tmp" / "another_host-1-abc"
    other_host.mkdir()  # maybe alive on a cluster node sharing the store: never touched
    Store(tmp_path).close()
    assert mine.is_dir() and other_host.is_dir()
    assert not abandoned.exists()
    first.close()


def test_opening_an_existing_store_writes_nothing(tmp_path: Path) -> None:
    Store(tmp_path).close()
    index = tmp_path / ".pipeline" / "index.sqlite"
    before = (index.stat().st_mtime_ns, index.read_bytes())
    Store(tmp_path).close()
    assert (index.stat().st_mtime_ns, index.read_bytes()) == before
