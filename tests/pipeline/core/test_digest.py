"""Artifact digests match W&B's; fingerprints and code digests are stable and specific."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core import digest


def _folder(root: Path, files: dict[str, bytes]) -> dict[str, str]:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return {rel: digest.file_md5(root / rel) for rel in files}


def test_manifest_digest_equals_wandb_artifact_digest(tmp_path: Path) -> None:
    import wandb

    files = {"a.txt": b"hello", "sub/b.bin": bytes(range(256)), "sub/deeper/c": b""}
    ours = digest.manifest_digest(_folder(tmp_path, files))
    artifact = wandb.Artifact("anything", type="dataset")
    artifact.add_dir(str(tmp_path))
    assert ours == artifact.digest


def test_names_and_order_do_not_count_but_bytes_and_paths_do() -> None:
    base = {"x": "AAAA", "y": "BBBB"}
    assert digest.manifest_digest(base) == digest.manifest_digest(dict(reversed(base.items())))
    assert digest.manifest_digest(base) != digest.manifest_digest({"x": "AAAA", "y": "CCCC"})
    assert digest.manifest_digest(base) != digest.manifest_digest({"x": "AAAA", "z": "BBBB"})


@given(st.dictionaries(st.text(min_size=1), st.floats(allow_nan=False) | st.integers()))
def test_fingerprint_ignores_key_order(config: dict[str, float]) -> None:
    flipped = dict(reversed(config.items()))
    assert digest.fingerprint("s", "c", config, {}) == digest.fingerprint("s", "c", flipped, {})


def test_fingerprint_covers_stage_code_config_and_inputs() -> None:
    base = digest.fingerprint("train", "code", {"lr": 0.1}, {"dataset": "d1"})
    assert digest.fingerprint("evaluate", "code", {"lr": 0.1}, {"dataset": "d1"}) != base
    assert digest.fingerprint("train", "code2", {"lr": 0.1}, {"dataset": "d1"}) != base
    assert digest.fingerprint("train", "code", {"lr": 0.2}, {"dataset": "d1"}) != base
    assert digest.fingerprint("train", "code", {"lr": 0.1}, {"dataset": "d2"}) != base


@pytest.fixture
def project(tmp_path: Path) -> Path:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pkg import a, b\n")
    (pkg / "a.py").write_text("import os\nfrom . import helper\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.other import g\n")
    (pkg / "helper.py").write_text("X = 1\n")
    (pkg / "other.py").write_text("def g(): ...\n")
    (pkg / "unrelated.py").write_text("Y = 2\n")
    return tmp_path


def test_code_files_follow_project_imports_only(project: Path) -> None:
    assert sorted(digest.code_files(project, ["pkg.a"])) == ["pkg/a.py", "pkg/helper.py"]
    # Imports inside functions count; the package's own __init__ does not.
    assert sorted(digest.code_files(project, ["pkg.b"])) == ["pkg/b.py", "pkg/other.py"]


def test_code_digest_changes_with_an_imported_file_only(project: Path) -> None:
    before = digest.code_digest(digest.code_files(project, ["pkg.a"]))
    (project / "pkg" / "unrelated.py").write_text("Y = 3\n")
    assert digest.code_digest(digest.code_files(project, ["pkg.a"])) == before
    (project / "pkg" / "helper.py").write_text("X = 2\n")
    assert digest.code_digest(digest.code_files(project, ["pkg.a"])) != before


def test_many_files_hash_the_same_on_every_core(tmp_path: Path) -> None:
    paths = []
    for i, size in enumerate([0, 10, 1 << 17, 1 << 18, 3]):
        path = tmp_path / f"f{i}"
        path.write_bytes(bytes([i]) * size)
        paths.append(path)
    expected = [digest.file_md5(p) for p in paths]
    assert digest.files_md5(paths) == expected  # large on average: threads
    assert digest.files_md5(paths[:1] + paths[-1:]) == [expected[0], expected[-1]]  # small
