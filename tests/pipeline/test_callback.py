"""The W&B facts the callback relies on still hold in the installed wandb."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from pipeline.core.errors import UsageError
from pipeline.execution import discover, remote


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


def test_mode_is_offline_unless_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert remote.resolve_mode(None) == "offline"
    assert remote.resolve_mode("disabled") == "disabled"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert remote.resolve_mode(None) == "online"
    monkeypatch.delenv("WANDB_MODE")
    (tmp_path / ".netrc").write_text("machine api.wandb.ai login user password secret\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert remote.credentials_configured()
    assert remote.resolve_mode(None) == "online"


def test_stages_come_from_the_package_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert [s.name for s in discover.stage_specs()][:2] == ["prepare_data", "train"]
    monkeypatch.setenv(discover.STAGES_ENV, "no_such_package_here")
    with pytest.raises(UsageError, match=r"`PIPELINE_STAGES=no_such_package_here`: no such"):
        discover.stage_specs()
    monkeypatch.setenv(discover.STAGES_ENV, "json")
    with pytest.raises(UsageError, match=r"package `json` defines no STAGES"):
        discover.stage_specs()
