"""A wave of a stage's members as one Hydra multirun, on whichever launcher Hydra is given."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError, PipelineError, StageFailed
from pipeline.core.paths import STORE_DIR
from pipeline.core.sweep import slot_label
from pipeline.execution import job as job_
from pipeline.execution.discover import stage_spec
from pipeline.execution.job import ArtifactRef, StageResult, StageRun
from pipeline.spec import (
    OUT_PARAM,
    StageSpec,
    checkpointing,
)
from pipeline.state import handback
from pipeline.state.objects import Files, remove

MEMBER_KEY = "pipeline_member"


@dataclass(frozen=True)
class MemberJob:
    """Everything one member's job needs, in plain picklable values."""

    key: str
    fingerprint: str
    config: Mapping[str, Any]  # resolved, without the path parameters
    code_digest: str
    inputs: Mapping[str, ArtifactRef]  # slot -> the version it reads
    artifacts: Mapping[str, str]  # output -> stored artifact name
    versions: Mapping[str, handback.Versions]  # output -> how to number its version
    handback: str  # the folder of the job's records (`pipeline.state.handback`)


@dataclass
class WaveTask:
    """The Hydra task of a wave: picklable, so a parallel launcher can ship it to workers.

    Each job picks its member by ``pipeline_member``, runs the stage on the member's
    resolved config and paths, and builds its outputs' version folders in the shared
    store inside the job, so that the W&B callback logs them with their versions; the
    submitter records them in the index from the job's hand-back record.
    """

    workspace: Path
    stage: str
    group: str
    jobs: Sequence[MemberJob]
    #: The process that launches the wave; a worker it started ends when it ends.
    launcher: int = field(default_factory=os.getpid)
    _runs: dict[int, StageRun] = field(default_factory=dict, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_runs": {}}

    def stage_run(self, config: Any) -> StageRun:
        """What the callback reports for this job (one object per job and process)."""
        index = int(config[MEMBER_KEY])
        if index not in self._runs:
            job, spec = self.jobs[index], stage_spec(self.stage)
            self._runs[index] = StageRun(
                stage=self.stage,
                config=job.config,
                inputs=job.inputs,
                fingerprint=job.fingerprint,
                group=self.group,
                workspace=self.workspace,
                media=frozenset(o.name for o in spec.logs if o.media),
            )
        return self._runs[index]

    def __call__(self, config: Any) -> StageResult:
        """Run one member; its outputs go to the store's files, its record to the submitter.

        Nothing here opens the index (a job may run on another host, over NFS): the
        hand-back folder gets `started.json`, then `result.json` with the versions built or
        the one-line error, which is also raised so that Hydra and W&B see the failure.
        What the job made is returned, for the W&B callback to log.
        """
        job_.end_with(self.launcher)
        job_.note_termination()
        job, spec = self.jobs[int(config[MEMBER_KEY])], stage_spec(self.stage)
        tracking = self.stage_run(config).tracking  # the callback's, once it opened the run
        files = Files(self.workspace / STORE_DIR)
        hand = Path(job.handback)
        out = hand / handback.OUT
        remove(out)  # a requeued job starts again from its checkpoints, not from these
        out.mkdir(parents=True)
        handback.write(hand, handback.STARTED, {**handback.here(), "member": job.key})
        environment = job_.environment()
        notes: list[str] = []
        try:
            with checkpointing(files.checkpoints(job.fingerprint)), job_.noting(notes):
                metrics = _plain(_call(spec, job, out) or {})
            outputs, handed = _build(files, spec, job, out)
            record: dict[str, Any] = {"outputs": handed, "metrics": metrics, "notes": notes}
            record |= {"environment": environment, "tracking": tracking, "written": files.written}
            handback.write(hand, handback.RESULT, record)
        except (Exception, KeyboardInterrupt) as exc:
            error = self._failed(job, exc, notes, tracking)
            if error is None:
                raise  # cancelled: no record, the submitter says the job did not finish
            raise error from exc
        finally:
            remove(out)
        # Handed back: a rerun of this fingerprint reuses the outputs, never the checkpoint.
        shutil.rmtree(files.checkpoints(job.fingerprint), ignore_errors=True)
        return StageResult(outputs, metrics, environment)

    def _failed(
        self, job: MemberJob, exc: BaseException, notes: list[str], tracking: Mapping[str, Any]
    ) -> PipelineError | None:
        """The failure's one-line error, recorded for the submitter; ``None`` if cancelled."""
        hand = Path(job.handback)
        # First give the space back (a full disk): drop the failed stage's objects,
        # which may hold its output files open, then its folder.
        job_.release(exc)
        free = shutil.disk_usage(hand).free
        remove(hand / handback.OUT)
        if isinstance(exc, KeyboardInterrupt) or job_.terminated:
            return None
        error = job_.failure(job.key, exc, free)
        if os.environ.get("SUBMITIT_EXECUTOR"):  # the job's log is all one sees there
            traceback.print_exception(exc, file=sys.stderr)
        error.__cause__ = exc  # as `raise ... from exc` sets it
        if os.getpid() == self.launcher:  # the launching process: it keeps the traceback
            job_.RAISED[job.handback] = error
        failed = {"error": str(error), "kind": type(error).__name__, "notes": notes}
        with contextlib.suppress(OSError):  # a full disk: the submitter says what it can
            handback.write(hand, handback.RESULT, {**failed, "tracking": dict(tracking)})
        return error


def _build(
    files: Files, spec: StageSpec, job: MemberJob, out: Path
) -> tuple[dict[str, ArtifactRef], dict[str, Any]]:
    """Build each output's version folder; the refs W&B logs, and the records handed back."""
    refs: dict[str, ArtifactRef] = {}
    handed: dict[str, Any] = {}
    made: set[str] = set()
    for o in spec.logs:
        staged = files.hash_output(out / o.name, job.artifacts[o.name], o.type)
        version, new = job.versions[o.name].choose(staged.digest)
        files.put_objects(out / o.name, staged, made)
        files.materialise(staged.name, version, staged.manifest, new, made)
        folder = files.folder(staged.name, version)
        refs[o.name] = ArtifactRef(staged.name, staged.type, folder, version, staged.digest, new)
        handed[o.name] = {"pin": vars(staged.pin(version)), "manifest": dict(staged.manifest)}
    return refs, handed


def _call(spec: StageSpec, job: MemberJob, staging: Path) -> Any:
    """The stage on its paths; gathered (fan-in) inputs arrive as {member label: folder}."""
    from hydra_zen import zen
    from omegaconf import DictConfig, OmegaConf

    values: dict[str, Any] = {**job.config, OUT_PARAM: str(staging)}
    for slot, ref in job.inputs.items():
        artifact = slot.split("@", 1)[0]
        if artifact in spec.fan_in:
            values.setdefault(artifact, {})[slot_label(slot)] = str(ref.path)
        else:
            values[slot] = str(ref.path)
    # Merged into the stage's structured config, so typed parameters (paths) get their types.
    config = OmegaConf.merge(OmegaConf.structured(spec.config), values)
    assert isinstance(config, DictConfig)
    return zen(spec.task)(config)


def _plain(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics as YAML-safe scalars (numpy and torch scalars have ``item``)."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        value = value.item() if hasattr(value, "item") else value
        out[str(key)] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


def quote(value: object) -> str:
    """A value as a quoted Hydra override value."""
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def launch_wave(task: WaveTask, spec: StageSpec, run_dir: Path, overrides: Sequence[str]) -> None:
    """Run every job of the wave; what each made is in its hand-back record.

    Raises what the launcher raised: its own failure, or a job's raised again.
    """
    from hydra.errors import ConfigCompositionException
    from hydra_zen import launch

    members = ",".join(str(i) for i in range(len(task.jobs)))
    # One member on the default launcher runs as a plain Hydra run: a sweep would compose
    # its config once more to validate it, for nothing. Same job folder: `<run_dir>/0`.
    launcher_chosen = any(o.startswith(("hydra/launcher", "hydra.launcher")) for o in overrides)
    multirun = len(task.jobs) > 1 or launcher_chosen
    settings = [
        f"+{MEMBER_KEY}={members}",
        f"hydra.sweep.dir={quote(run_dir)}"
        if multirun
        else f"hydra.run.dir={quote(run_dir / '0')}",
        # Logs go to stderr: stdout belongs to the CLI (`--json` documents).
        "hydra.job_logging.handlers.console.stream=ext://sys.stderr",
        "hydra.hydra_logging.handlers.console.stream=ext://sys.stderr",
        *overrides,
    ]
    try:
        with contextlib.redirect_stderr(_WithoutJobErrorLine(sys.stderr)), _quiet(_LAUNCHERS):
            launcher: Any = launch  # its overloads want `multirun` as a literal
            launcher(
                spec.config,
                task,
                overrides=settings,
                multirun=multirun,
                config_name=spec.name,
                job_name=spec.name,
                version_base="1.3",
            )
    except PipelineError:  # ours, worded already (a stage's failure, a busy index, ...)
        raise
    except ConfigCompositionException as exc:
        chosen = " ".join(o for o in overrides if o.startswith("hydra")) or "the launcher"
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"cannot use {chosen}: {first} (launchers: basic, joblib, submitit_local, "
            "submitit_slurm)"
        ) from exc
    except Exception as exc:  # a launcher's own failure, or a job's raised again by Hydra
        detail = f"{type(exc).__name__}: {exc}"
        raise StageFailed(f"stage `{spec.name}` failed: {detail}") from exc


# The launchers' own INFO lines (`Launching 2 jobs locally`, `#0 : +pipeline_member=0`) name
# our internal member index, not the member: the CLI prints each member's key itself.
_LAUNCHERS = ("hydra._internal.core_plugins.basic_launcher", "hydra_plugins")


@contextlib.contextmanager
def _quiet(names: Sequence[str]) -> Iterator[None]:
    """Only warnings and errors from these loggers while the block runs."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class _WithoutJobErrorLine:
    """Standard error without Hydra's "Error executing job ..." line: we say it ourselves."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if text.startswith("Error executing job with overrides"):
            return len(text)
        return int(self._stream.write(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
