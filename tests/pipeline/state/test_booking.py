"""A job's hand-back booked by the submitter: versions recorded as the job numbered them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core import digest
from pipeline.core.digest import file_md5
from pipeline.core.paths import HOST
from pipeline.state import booking, handback
from pipeline.state.objects import Files, rehash
from pipeline.state.store import Store
from tests.files import stage_output


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path)
    yield s
    s.close()


def _job(store: Store, files: dict[str, bytes], number: int | None = None) -> dict:
    """What a job hands back for one `model` output: built with the store's files only."""
    known, first = store.numbers("model")
    out = store.root / "tmp" / f"out-{os.urandom(4).hex()}"
    for rel, data in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    built = Files(store.root)  # as in a job: no index, files rehashed
    staged = built.hash_output(out, "model", "model")
    version, _ = handback.Versions(known, first if number is None else number).choose(staged.digest)
    built.put_objects(out, staged, set())
    built.materialise("model", version, staged.manifest, version not in known.values(), set())
    handed = {"pin": vars(staged.pin(version)), "manifest": dict(staged.manifest)}
    return {
        "outputs": {"model": handed},
        "metrics": {"loss": 0.5},
        "environment": {"python": "3"},
        "tracking": {"mode": "disabled"},
        "written": built.written,
    }


def _run(store: Store) -> int:
    return store.runs.start("train", "fp", {})


def test_a_job_builds_its_version_and_the_index_learns_of_it_from_the_submitter(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _job(store, {"w.pt": b"one"})
    assert (store.root / "artifacts" / "model" / "v0" / "w.pt").read_bytes() == b"one"
    assert store.versions("model") == []  # the job wrote no row
    run = _run(store)
    outputs = booking.book(store, run, result)
    assert outputs["model"].version == "v0" and store.versions("model") == ["v0"]
    assert store.cached("fp") is not None
    assert store.runs.all()[-1]["wandb"]["created"] == ["model"]
    # The job's stat rows vouch for the files it wrote: checking them reads nothing.
    calls: list[Path] = []
    monkeypatch.setattr(digest, "file_md5", lambda p: calls.append(p) or file_md5(p))
    assert store.intact(outputs["model"]) and calls == []


def test_the_same_content_twice_in_a_wave_keeps_the_first_version(store: Store) -> None:
    first, second = _job(store, {"w": b"same"}, 0), _job(store, {"w": b"same"}, 1)
    booking.book(store, _run(store), first)
    pins = booking.book(store, _run(store), second)
    assert pins["model"].version == "v0" and store.versions("model") == ["v0"]
    assert not (store.root / "artifacts" / "model" / "v1").exists()
    assert store.runs.all()[-1]["wandb"]["created"] == []


def test_a_number_taken_since_goes_to_the_next_one_and_spares_the_other_folder(
    store: Store,
) -> None:
    orphan = _job(store, {"w": b"mine"}, 0)  # its submitter died before booking it
    taken = store.commit(stage_output(store, {"w": b"theirs"}), "model", "model")  # v0, anew
    pins = booking.book(store, _run(store), orphan)
    assert (taken.version, pins["model"].version) == ("v0", "v1")
    assert store.intact(taken) and store.intact(pins["model"])
    assert (store.path("model", "v1") / "w").read_bytes() == b"mine"


def test_a_file_changed_after_the_job_wrote_it_is_rebuilt_at_booking(store: Store) -> None:
    result = _job(store, {"w": b"one"})
    folder = store.root / "artifacts" / "model" / "v0"
    (folder / "w").unlink()
    (folder / "w").write_bytes(b"two")  # the same size, another content (and inode)
    pins = booking.book(store, _run(store), result)
    assert store.damage(pins["model"]) is None  # rebuilt from the objects at booking
    assert rehash(folder, ["w"]) == {"w": file_md5(folder / "w")}
    assert (folder / "w").read_bytes() == b"one"


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def _folder(store: Store, owner: str, run: int, result: dict | None) -> Path:
    folder = store.root / "handback" / f"{owner}-abc"
    folder.mkdir(parents=True)
    handback.write(folder, booking.MEMBER, {"run": run, "member": "train"})
    if result is not None:
        handback.write(folder, handback.RESULT, result)
    return folder


def test_the_next_run_books_what_a_killed_submitters_jobs_handed_back(tmp_path: Path) -> None:
    store = Store(tmp_path)
    done = _folder(store, f"{HOST}-{_dead_pid()}", _run(store), _job(store, {"w": b"1"}))
    lost = _folder(store, f"{HOST}-{_dead_pid() + 1_000_000}", _run(store), None)
    live = _folder(store, f"{HOST}-{os.getpid()}", _run(store), None)
    remote = _folder(store, "another_host-1", _run(store), None)
    store.close()
    booking.adopt(tmp_path)
    store = Store(tmp_path)
    statuses = [r["status"] for r in store.runs.all()]
    assert statuses == ["ok", "interrupted", "running", "running"]
    assert store.resolve("model", "v0") is not None
    assert not done.exists() and not lost.exists()
    assert live.is_dir() and remote.is_dir()  # their submitters may still book them
    store.close()


def test_a_record_is_written_whole(tmp_path: Path) -> None:
    handback.write(tmp_path, "r.json", {"a": 1})
    handback.write(tmp_path, "r.json", {"a": 2})
    assert handback.read(tmp_path, "r.json") == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    assert handback.read(tmp_path, "missing.json") is None


def test_versions_keep_known_content_and_number_new_content() -> None:
    versions = handback.Versions({"d0": "v0"}, 3)
    assert versions.choose("d0") == ("v0", False)
    assert versions.choose("d9") == ("v3", True)


def test_a_cluster_job_is_named_with_its_log() -> None:
    started = {"executor": "slurm", "job_id": "12_1", "log": "/x/12_1_0_log.err"}
    assert handback.where(started) == " (SLURM job 12_1, log /x/12_1_0_log.err)"
    assert handback.where({"host": HOST, "pid": 1}) == ""
    assert not handback.running({"host": HOST, "pid": os.getpid()})  # this process: not a job
