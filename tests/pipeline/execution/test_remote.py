"""W&B's mode and credentials, as the runs and `pull` find them."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.execution import remote


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
