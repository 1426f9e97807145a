"""The W&B facts the callback relies on still hold in the installed wandb."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from pipeline.execution import callback
from pipeline.execution.job import StageResult, StageRun


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


class _GoneRun:
    """A W&B run whose service process was killed with its cluster job."""

    def __init__(self, error: Exception) -> None:
        self.error, self.summary = error, {}

    def finish(self, exit_code: int = 0) -> None:
        raise self.error


def _ended(error: Exception, status: JobStatus) -> None:
    tracked = callback.WandbCallback()
    tracked._run = _GoneRun(error)
    tracked._stage = StageRun("train", {}, {})
    done = JobReturn(status=status, _return_value=StageResult({}, {}))
    tracked.on_job_end(OmegaConf.create({}), done)


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED])
def test_a_run_whose_wandb_service_is_gone_costs_a_warning_not_the_job(
    status: JobStatus, caplog: pytest.LogCaptureFixture
) -> None:
    _ended(ConnectionResetError("Connection lost"), status)
    assert "W&B lost the run of `train`: " in caplog.text


def test_any_other_error_of_the_callback_still_fails_the_job() -> None:
    with pytest.raises(TypeError, match=r"a bug"):
        _ended(TypeError("a bug"), JobStatus.COMPLETED)
