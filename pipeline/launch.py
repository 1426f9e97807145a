"""A wave of a stage's members as one Hydra multirun, on whichever launcher Hydra is given."""

from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import logging
import os
import platform
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.callback import ArtifactRef, StageRun, stage_spec
from pipeline.errors import ConfigError, NoSpace, PipelineError, StageFailed
from pipeline.spec import (
    OUT_PARAM,
    StageInputError,
    StageSpec,
    checkpointing,
    pin_cpu_numerics,
)
from pipeline.store import Store
from pipeline.sweep import slot_label

# Libraries whose version can change a stage's bits; recorded in the lock, not fingerprinted.
_LIBRARIES = ("numpy", "torch", "torchvision", "scikit-learn", "matplotlib", "mnist1d")
MEMBER_KEY = "pipeline_member"
_FULL_BELOW = 1 << 20  # bytes free under which a failing stage is taken to have filled the disk


def environment() -> dict[str, str]:
    """Python's, the CPU code paths' and the bit-relevant libraries' versions.

    Pins the CPU code paths first (see :func:`pipeline.spec.pin_cpu_numerics`), so it
    must be called before the stage's first tensor operation; imports none of the libraries.
    """
    found = {"python": platform.python_version(), "cpu": pin_cpu_numerics()}
    for name in _LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


@dataclass(frozen=True)
class MemberJob:
    """Everything one member's job needs, in plain picklable values."""

    key: str
    fingerprint: str
    config: Mapping[str, Any]  # resolved, without the path parameters
    code_digest: str
    inputs: Mapping[str, ArtifactRef]  # slot -> the version it reads
    artifacts: Mapping[str, str]  # output -> stored artifact name


@dataclass
class WaveTask:
    """The Hydra task of a wave: picklable, so a parallel launcher can ship it to workers.

    Each job picks its member by ``pipeline_member``, runs the stage on the member's
    resolved config and paths, and commits the outputs to the shared store inside the
    job, so that the W&B callback logs them with their versions.
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

    def __call__(self, config: Any) -> dict[str, Any]:
        _end_with(self.launcher)
        job, spec = self.jobs[int(config[MEMBER_KEY])], stage_spec(self.stage)
        tracked = self.stage_run(config)
        store = Store(self.workspace)
        env = environment()
        run_id = store.runs.start(
            job.key, job.fingerprint, _pins(job.inputs), job.config, job.code_digest, env
        )
        staging = store.staging()  # after the index took the run: a busy one leaves no folder
        try:
            with checkpointing(store.checkpoints(job.fingerprint)):
                tracked.metrics = _plain(_call(spec, job, staging) or {})
            tracked.environment = env
            committed = {
                o.name: store.commit_version(staging / o.name, job.artifacts[o.name], o.type)
                for o in spec.logs
            }
            outputs = {k: pin for k, (pin, _) in committed.items()}
            store.drop_checkpoints(job.fingerprint)  # committed: nothing resumes this run
        except (Exception, KeyboardInterrupt) as exc:
            # First give the space back (a full disk): drop the failed stage's objects,
            # which may hold its output files open, then its folder.
            _release(exc)
            free = shutil.disk_usage(staging).free
            store.clean_tmp(staging)
            interrupted = isinstance(exc, KeyboardInterrupt)
            store.runs.end(run_id, None, {}, tracked.tracking, interrupted=interrupted)
            if interrupted:
                raise
            if isinstance(exc, StageInputError):  # bad input, not a bug: no traceback
                raise ConfigError(f"stage `{job.key}`: {exc}") from exc
            # Libraries report a full disk in their own words (numpy: "N requested and M
            # written", torch: "iostream error"): a failure with the disk full is one.
            if free < _FULL_BELOW and not isinstance(exc, PipelineError):
                raise NoSpace(
                    f"stage `{job.key}` ran out of disk space writing its outputs; free space "
                    "on the disk holding the workspace, or use a workspace on another disk "
                    "(`--workspace DIR`), and rerun (stages that finished are kept)"
                ) from exc
            detail = exc if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"
            raise StageFailed(f"stage `{job.key}` failed: {detail}") from exc
        finally:
            store.clean_tmp(staging)
        tracked.outputs.update(
            {
                k: ArtifactRef(p.name, p.type, store.path(p.name, p.version), p.version, new=new)
                for k, (p, new) in committed.items()
            }
        )
        # Which outputs this run made first: `sync` uploads their creators in version order.
        created = sorted(k for k, (_, new) in committed.items() if new)
        store.runs.end(run_id, outputs, tracked.metrics, {**tracked.tracking, "created": created})
        store.close()
        return {
            "key": job.key,
            "metrics": tracked.metrics,
            "environment": env,
            "outputs": {k: vars(p) for k, p in outputs.items()},
        }


def _release(exc: BaseException) -> None:
    """Drop the local variables of a failed stage's frames; the traceback still prints."""
    seen: BaseException | None = exc
    while seen is not None:
        traceback.clear_frames(seen.__traceback__)
        seen = seen.__cause__ or seen.__context__
    gc.collect()


_watched: list[int] = []  # the process (pid) whose parent is watched, once per process


def _end_with(launcher: int) -> None:
    """In a worker the launcher started (joblib's loky, submitit's local jobs): die with it.

    A killed launcher (SIGKILL, a lost terminal) would leave its workers running, loky's
    for good. A worker whose parent is the launcher watches it and kills itself once it is
    gone (then it has another parent), which the store survives as any kill. A job with
    another parent (SLURM's `slurmstepd`) is left alone: it outlives its submitter by design.
    """
    if os.getppid() != launcher or os.getpid() in _watched:
        return
    _watched.append(os.getpid())

    def watch() -> None:
        while os.getppid() == launcher:
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="end-with-launcher", daemon=True).start()


def _pins(inputs: Mapping[str, ArtifactRef]) -> dict[str, Any]:
    from pipeline.lock import InputPin

    return {slot: InputPin(ref.name, ref.version, ref.digest) for slot, ref in inputs.items()}


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


def launch_wave(
    task: WaveTask, spec: StageSpec, run_dir: Path, overrides: Sequence[str]
) -> list[dict[str, Any]]:
    """Run every job of the wave; each job's result, in job order."""
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
            returns = launcher(
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
    if not multirun:
        return [returns.return_value]
    return [job_return.return_value for wave in returns for job_return in wave]


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
