"""The lock as data and text: it round-trips exactly, and a bad one names its line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core import lock, lockfile
from pipeline.core.errors import LockError
from tests.pipeline.core.locks import sample

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


def test_missing_or_empty_lock_is_empty(tmp_path: Path) -> None:
    assert lockfile.read(tmp_path / "absent.yaml") == lock.Lock()
    assert lock.loads("") == lock.Lock()


def test_lock_holds_no_times_hosts_or_absolute_paths() -> None:
    text = lock.dumps(sample())
    assert "/" not in text.replace("stages/train.py", "").replace("stages.models", "")
    assert "&id" not in text


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(LockError, match=r"`dvc_free_lock.yaml:3` is not valid YAML"):
        lock.loads("schema: 1\nstages:\n\ttrain: {}\n")


def test_a_wrong_field_names_its_line_and_path() -> None:
    text = lock.dumps(sample()).replace("size: 1234", "size: big")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "size: big" in t)
    with pytest.raises(
        LockError, match=rf":{line}`: `stages.train.outputs.model.size` should be an"
    ):
        lock.loads(text)


def test_a_missing_field_is_reported() -> None:
    text = lock.dumps(sample()).replace("    fingerprint: " + "f" * 64 + "\n", "")
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
    text = lock.dumps(sample())
    old = next(line for line in text.splitlines() if line.strip().startswith(f"{field}: "))
    line = text.splitlines().index(old) + 1
    bad = text.replace(old, old.split(":")[0] + f": {value}", 1)
    with pytest.raises(LockError, match=rf":{line}`: `stages\.train\..*\.{field}` should be a"):
        lock.loads(bad)
