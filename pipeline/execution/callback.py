"""The W&B callback: each stage run is a W&B run that declares the artifacts it used and logged."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pipeline.core.errors import RemoteError
from pipeline.execution import remote, standalone
from pipeline.execution.job import ArtifactRef, StageResult, StageRun
from pipeline.spec import LISTENERS

log = logging.getLogger(__name__)

# Settings that keep a run cheap: no console capture, system stats, git or code snapshot.
_CHEAP = {
    "console": "off",
    "x_disable_stats": True,
    "x_disable_machine_info": True,
    "x_save_requirements": False,
    "disable_git": True,
    "disable_code": True,
    "silent": True,
}


class WandbCallback(Callback):
    """A Hydra callback that mirrors a stage run in W&B; it records, it never decides.

    ``on_job_start`` opens one W&B run per stage job and declares every input as used;
    ``on_job_end`` logs every output (digest, local version, fingerprint and config in
    the metadata), sets the summary and finishes, or finishes with exit code 1 and logs
    nothing when the job failed.  Offline, a use is recorded with the private call that
    online ``use_artifact(draft)`` makes, since wandb refuses ``use_artifact`` offline.
    """

    def __init__(
        self, project: str = "lineage", entity: str | None = None, mode: str | None = None
    ) -> None:
        self.project, self.entity, self.mode = project, entity, mode
        self._run: Any = None
        self._stage: StageRun | None = None

    def on_job_start(self, config: DictConfig, *, task_function: Any, **kwargs: Any) -> None:
        # The pipeline's task says which member this job is; a stand-alone app's config does.
        stage = (
            task_function.stage_run(config)
            if hasattr(task_function, "stage_run")
            else standalone.stage_run(config)
        )
        mode = remote.resolve_mode(self.mode)
        stage.tracking.clear()
        stage.tracking["mode"] = mode
        if mode == "disabled":
            return
        self._stage, self._run = stage, self._init(stage, mode)
        for ref in stage.inputs.values():
            self._use(ref)
        LISTENERS.append(self._history)

    def _history(self, row: Mapping[str, float]) -> None:
        """A row of the stage's progress (`pipeline.spec.report`) as a step of W&B's history.

        W&B gone (its service process killed) costs the history, never the stage.
        """
        if self._run is None:
            return
        try:
            self._run.log(dict(row))
        except Exception as exc:
            log.warning("W&B stopped taking the run's history: %s", remote.short(exc))
            LISTENERS.remove(self._history)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        run, stage = self._run, self._stage
        self._run = self._stage = None
        if self._history in LISTENERS:
            LISTENERS.remove(self._history)
        if run is None or stage is None:
            return
        try:
            if job_return.status != JobStatus.COMPLETED:
                run.finish(exit_code=1)
                return
            try:
                result = job_return.return_value
                if not isinstance(result, StageResult):  # a stand-alone app returns metrics
                    result = StageResult(standalone.outputs(config), dict(result or {}))
                for logical, ref in result.outputs.items():
                    self._log(run, stage, result, logical, ref)
                run.summary.update(dict(result.metrics))
            finally:
                run.finish()
        except ConnectionError as exc:
            # W&B's service process gone (a cancelled cluster job's, killed with it): the
            # stage's outputs and record are in the store all the same.
            log.warning("W&B lost the run of `%s`: %s", stage.stage, remote.short(exc))

    def _init(self, stage: StageRun, mode: str) -> Any:
        # The CLI prints what matters; wandb's own lines (one per artifact) would drown it.
        os.environ.setdefault("WANDB_SILENT", "true")
        remote.forget_blank_mode()  # else wandb refuses it, and the run goes untracked
        import wandb

        entity = self.entity or os.environ.get("WANDB_ENTITY") or None
        if mode == "online":
            entity, mode = _online(entity)
        short = f"-{stage.fingerprint[:8]}" if stage.fingerprint else ""
        options: dict[str, Any] = {
            "project": self.project,
            # Online, the entity is always named, so that artifacts go where the run goes;
            # offline without one, `pipeline sync` fills it in before uploading.
            "entity": entity,
            "job_type": stage.stage,
            "group": stage.group,
            "name": f"{stage.stage}{short}",
            "config": dict(stage.config),
            "reinit": "create_new",
            "dir": os.environ.get("WANDB_DIR") or str(stage.workspace),
            "settings": wandb.Settings(**_CHEAP, **remote.run_bounds()),  # type: ignore[arg-type]
        }
        try:
            run = wandb.init(mode=mode, **options)  # type: ignore[arg-type]
        except Exception as exc:
            if mode != "online":
                raise
            _fall_back(f"wandb.init failed: {remote.short(exc)}")
            mode = "offline"
            run = wandb.init(mode=mode, **options)  # type: ignore[arg-type]
        stage.tracking.clear()  # in the order the index has always kept
        stage.tracking.update(
            id=run.id,
            project=self.project,
            entity=entity,
            mode=mode,
            dir=_relative(Path(run.dir).parent, stage.workspace),
        )
        return run

    def _use(self, ref: ArtifactRef) -> None:
        import wandb

        artifact = wandb.Artifact(ref.name, type=ref.type)
        artifact.add_dir(str(ref.path), policy="immutable")
        # A use names no alias: on a server that merges aliases into the version a
        # digest dedups to, `latest` would move back to this (older) version.
        with _aliases_as_given():
            if self._run.offline:
                # wandb refuses use_artifact offline; this is what it does inside, online.
                self._run._log_artifact(
                    artifact, aliases=[], is_user_created=True, use_after_commit=True
                )
            else:
                self._run.use_artifact(artifact)

    def _log(
        self, run: Any, stage: StageRun, result: StageResult, logical: str, ref: ArtifactRef
    ) -> None:
        import wandb

        metadata = {
            "fingerprint": stage.fingerprint,
            "local_version": ref.version,
            "stage": stage.stage,
            "config": dict(stage.config),
            # What a teammate's `run --pull` needs to write the lock block without running.
            "metrics": dict(result.metrics),
            "environment": dict(result.environment),
        }
        artifact = wandb.Artifact(ref.name, type=ref.type, metadata=metadata)
        # Store versions never change, so W&B need not copy them to its staging area.
        artifact.add_dir(str(ref.path), policy="immutable" if ref.version else "mutable")
        # `latest` goes with a new version only: old content logged again moves nothing,
        # as in the store, whether or not the server merges aliases on a dedup hit.
        with _aliases_as_given():
            run.log_artifact(artifact, aliases=["latest"] if ref.new else [])
        if logical in stage.media:
            images = {
                f"{logical}/{png.stem}": wandb.Image(str(png))
                for png in sorted(ref.path.rglob("*.png"))
            }
            run.log(images)


@contextlib.contextmanager
def _aliases_as_given() -> Iterator[None]:
    """wandb adds `latest` to every alias list it sends, uses included; send ours as given.

    The SDK's `Run._log_artifact` passes aliases through `wandb.util._resolve_aliases`
    (imported into `wandb.sdk.wandb_run`), which always adds `latest`; a test on the
    protocol server fails if that changes.
    """
    from wandb.sdk import wandb_run

    original = getattr(wandb_run, "_resolve_aliases")  # noqa: B009

    def as_given(aliases: Any) -> list[str]:
        listed = [aliases] if isinstance(aliases, str) else list(aliases or [])
        return list(dict.fromkeys(str(a) for a in listed))

    setattr(wandb_run, "_resolve_aliases", as_given)  # noqa: B010
    try:
        yield
    finally:
        setattr(wandb_run, "_resolve_aliases", original)  # noqa: B010


_ONLINE: dict[str | None, tuple[str | None, str]] = {}  # per process: the probe's answer


def _online(entity: str | None) -> tuple[str | None, str]:
    """The entity and the mode to use: asks W&B once per process, within the bound.

    When W&B does not answer, refuses the key or errs, runs are recorded offline (one
    warning), to be uploaded by `pipeline sync`; the stage's results never depend on it.
    """
    if entity not in _ONLINE:
        try:
            found = remote.default_entity()  # also proves the server answers, key accepted
            _ONLINE[entity] = (entity or found, "online")
        except RemoteError as exc:
            _fall_back(str(exc))
            _ONLINE[entity] = (entity, "offline")
    return _ONLINE[entity]


def _fall_back(why: str) -> None:
    log.warning(
        "W&B online is not available (%s); recording runs offline, "
        "upload them with `python -m pipeline sync`",
        why,
    )


def _relative(path: Path, workspace: Path) -> str:
    """The run folder relative to the workspace when inside it, so a moved workspace works."""
    try:
        return path.resolve().relative_to(workspace.resolve()).as_posix()
    except ValueError:
        return str(path)
