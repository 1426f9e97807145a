"""What `gc` keeps and says, on small values (the end-to-end tests remove real versions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core import lock
from pipeline.state.collect import Garbage, human, referenced, summary, unpinned


def _lock(model: str, digest: str) -> lock.Lock:
    entry = lock.StageLock(
        fingerprint="f" * 32,
        code_digest="c" * 32,
        code={},
        config={},
        inputs={"model": lock.InputPin("model", model, digest)},
        outputs={"evaluation": lock.OutputPin("evaluation", "evaluation", "v3", "e" * 32, 1, 1)},
    )
    return lock.Lock({"evaluate[train.lr=0.1]": entry})


def test_referenced_holds_every_input_and_output_of_every_lock() -> None:
    keep = referenced([_lock("v1", "a" * 32), _lock("v0", "b" * 32)])
    assert ("model", "v1") in keep and ("model", "v0") in keep
    assert ("evaluation", "v3") in keep and ("model", "b" * 32) in keep


def test_unpinned_keeps_a_version_by_number_or_by_digest() -> None:
    keep = referenced([_lock("v1", "a" * 32)])
    versions = [("model", 0, "z" * 32), ("model", 1, "y" * 32), ("model", 2, "a" * 32)]
    assert unpinned(versions, keep) == [("model", 0)]
    assert unpinned([("plots", 1, "x" * 32)], keep) == [("plots", 1)]
    assert unpinned([], keep) == []


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (4_200_000, "4.2 MB"), (3 * 10**12, "3.0 TB")],
)
def test_human_sizes(size: int, text: str) -> None:
    assert human(size) == text


def test_summary_names_each_version_and_the_bytes() -> None:
    garbage = Garbage((("evaluation", 1, 10), ("model", 1, 4_000_000)), (), (), 4_200_000)
    assert summary(garbage, False, 0) == [
        "removed 2 versions (evaluation:v1, model:v1), 4.2 MB freed"
    ]
    dry = summary(garbage, True, 0)
    assert dry[:2] == ["would remove evaluation:v1 (10 B)", "would remove model:v1 (4.0 MB)"]
    assert dry[2:] == [
        "would remove 2 versions (evaluation:v1, model:v1), 4.2 MB would be freed",
        "dry run: nothing was changed",
    ]


def test_summary_when_nothing_goes() -> None:
    nothing = Garbage((), (), (), 0)
    assert summary(nothing, False, 0) == ["nothing to remove: every version is pinned by the lock"]
    assert summary(nothing, False, 2)[0].endswith("the lock or its 2 committed revisions")
    leftover = Garbage((), (Path("v3"),), (), 2000)
    assert summary(leftover, False, 0)[1] == "removed what an interrupted gc left, 2.0 kB"
