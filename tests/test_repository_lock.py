"""The committed `dvc_free_lock.yaml` pins the default pipeline of the code as it is now."""

from __future__ import annotations

from pathlib import Path

import pytest

import stages
from pipeline.core import digest, lockfile, paths
from pipeline.execution import compose, hydra_store
from pipeline.execution.project import code_root
from pipeline.spec import StageSpec

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("spec", stages.STAGES, ids=lambda s: s.name)
def test_the_committed_lock_matches_the_code_and_default_config(spec: StageSpec) -> None:
    entry = lockfile.read(ROOT / paths.LOCK_NAME).stages[spec.name]
    with hydra_store.registered(stages.STAGES):
        config = compose.compose(spec, []).config
    code = digest.code_files(code_root(spec), [spec.module])
    inputs = {name: pin.digest for name, pin in entry.inputs.items()}
    assert entry.overrides == ()
    # Made from a fresh store, as a fresh clone reproduces it: every version is v0.
    assert {pin.version for pin in [*entry.inputs.values(), *entry.outputs.values()]} <= {"v0"}
    assert entry.code == code, "stage code changed: rerun `python -m pipeline run` and commit"
    assert entry.config == config, "defaults changed: rerun `python -m pipeline run` and commit"
    assert (
        digest.fingerprint(spec.name, digest.code_digest(code), config, inputs) == entry.fingerprint
    )
