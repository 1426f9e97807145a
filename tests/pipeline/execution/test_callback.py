"""The W&B facts the callback relies on still hold in the installed wandb."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest


def test_the_private_offline_use_call_keeps_its_signature() -> None:
    from wandb.sdk.wandb_run import Run

    params = inspect.signature(Run._log_artifact).parameters
    assert list(params)[:2] == ["self", "artifact_or_path"]
    assert params["is_user_created"].default is False
    assert params["use_after_commit"].default is False
    # Online `use_artifact(draft)` is exactly this call, which is why it may be used offline.
    source = inspect.getsource(Run.use_artifact)
    assert "is_user_created=True" in source
    assert "use_after_commit=True" in source


def test_offline_use_artifact_is_still_refused(tmp_path: Path) -> None:
    import wandb

    run = wandb.init(mode="offline", dir=str(tmp_path), settings=wandb.Settings(silent=True))
    try:
        with pytest.raises(TypeError, match=r"Cannot use artifact when in offline mode"):
            run.use_artifact("dataset:latest")
    finally:
        run.finish()
