"""Which version a typed ref means: an explicit one, W&B's ``latest``, or the lock's pin."""

from __future__ import annotations

import pytest

from pipeline.core.errors import UsageError
from pipeline.core.lock import InputPin, Lock, OutputPin, StageLock
from pipeline.state import lineage

D = "0" * 32


def _block(outputs: dict[str, str], inputs: dict[str, str] | None = None) -> StageLock:
    return StageLock(
        fingerprint=D,
        code_digest=D,
        code={},
        config={},
        inputs={k: InputPin(k, v, D) for k, v in (inputs or {}).items()},
        outputs={k: OutputPin(k, k, v, D, 1, 1) for k, v in outputs.items()},
    )


MAIN = {"train": _block({"model": "v0"}), "evaluate": _block({}, {"model": "v0"})}
SWEEP = {
    "train[train.lr=0.1]": _block({"model": "v1"}),
    "train[train.lr=0.2]": _block({"model": "v10"}),
    "train[train.lr=0.3]": _block({"model": "v2"}),
}


def test_parse_ref_keeps_a_bare_name_unversioned() -> None:
    assert lineage.parse_ref("model:v2") == ("model", "v2")
    assert lineage.parse_ref("model") == ("model", None)
    with pytest.raises(UsageError, match="should be NAME or NAME:VERSION"):
        lineage.parse_ref(":v2")


def test_pinned_lists_each_version_with_the_blocks_that_log_or_use_it() -> None:
    assert lineage.pinned(Lock(stages={**MAIN, **SWEEP}), "model") == {
        "v0": ["evaluate", "train"],
        "v1": ["train[train.lr=0.1]"],
        "v10": ["train[train.lr=0.2]"],
        "v2": ["train[train.lr=0.3]"],
    }


def test_an_explicit_version_or_latest_means_what_it_says() -> None:
    full = Lock(stages=MAIN)
    assert lineage.choose("model", "v7", full) == ("v7", None)
    assert lineage.choose("model", "latest", full) == ("latest", None)


def test_a_bare_name_is_the_version_the_lock_pins() -> None:
    assert lineage.choose("model", None, Lock(stages=MAIN)) == ("v0", None)


def test_a_bare_name_the_lock_does_not_pin_falls_back_to_latest_and_says_so() -> None:
    for absent in (None, Lock(stages=MAIN)):
        assert lineage.choose("plots", None, absent) == (
            "latest",
            "dvc_free_lock.yaml pins no `plots`; showing `plots:latest`",
        )


def test_the_pipelines_own_pin_wins_over_sweep_members_with_a_note() -> None:
    assert lineage.choose("model", None, Lock(stages={**MAIN, **SWEEP})) == (
        "v0",
        "dvc_free_lock.yaml also pins `model:v1`, `model:v2`, `model:v10` for sweep "
        "members (name one to see it, e.g. `model:v1`)",
    )


def test_several_member_pins_and_no_main_one_need_a_version_named() -> None:
    many = {f"train[train.lr={i}]": _block({"model": f"v{i}"}) for i in range(1, 7)}
    with pytest.raises(UsageError) as caught:
        lineage.choose("model", None, Lock(stages=many))
    assert str(caught.value) == (
        "dvc_free_lock.yaml pins 6 versions of `model` for sweep members: `model:v1`, "
        "`model:v2`, `model:v3`, `model:v4` and 2 more; name one, e.g. `model:v1`"
    )
    one = {"train[train.lr=1]": _block({"model": "v1"})}
    assert lineage.choose("model", None, Lock(stages=one)) == ("v1", None)
