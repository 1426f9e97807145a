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

from pipeline import handback
from pipeline.callback import ArtifactRef, StageRun, stage_spec
from pipeline.errors import ConfigError, NoSpace, PipelineError, StageFailed
from pipeline.memo import STORE_DIR
from pipeline.objects import Files, remove
from pipeline.spec import (
    NOTE,
    OUT_PARAM,
    StageInputError,
    StageSpec,
    checkpointing,
    pin_cpu_numerics,
)
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
    versions: Mapping[str, handback.Versions]  # output -> how to number its version
    handback: str  # the folder of the job's records (`pipeline.handback`)


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

    def __call__(self, config: Any) -> dict[str, Any]:
        """Run one member; its outputs go to the store's files, its record to the submitter.

        Nothing here opens the index (a job may run on another host, over NFS): the
        hand-back folder gets `started.json`, then `result.json` with the versions built or
        the one-line error, which is also raised so that Hydra and W&B see the failure.
        """
        _end_with(self.launcher)
        _note_termination()
        job, spec = self.jobs[int(config[MEMBER_KEY])], stage_spec(self.stage)
        tracked = self.stage_run(config)
        files = Files(self.workspace / STORE_DIR)
        hand = Path(job.handback)
        out = hand / handback.OUT
        remove(out)  # a requeued job starts again from its checkpoints, not from these
        out.mkdir(parents=True)
        handback.write(hand, handback.STARTED, {**handback.here(), "member": job.key})
        env = environment()
        notes: list[str] = []
        handed: dict[str, Any] = {}
        try:
            with checkpointing(files.checkpoints(job.fingerprint)), _noting(notes):
                tracked.metrics = _plain(_call(spec, job, out) or {})
            tracked.environment = env
            made: set[str] = set()
            for o in spec.logs:
                staged = files.hash_output(out / o.name, job.artifacts[o.name], o.type)
                version, new = job.versions[o.name].choose(staged.digest)
                files.put_objects(out / o.name, staged, made)
                files.materialise(staged.name, version, staged.manifest, new, made)
                tracked.outputs[o.name] = ArtifactRef(
                    staged.name,
                    staged.type,
                    files.folder(staged.name, version),
                    version,
                    staged.digest,
                    new=new,
                )
                outputs = {"pin": vars(staged.pin(version)), "manifest": dict(staged.manifest)}
                handed[o.name] = outputs
            shutil.rmtree(files.checkpoints(job.fingerprint), ignore_errors=True)
        except (Exception, KeyboardInterrupt) as exc:
            # First give the space back (a full disk): drop the failed stage's objects,
            # which may hold its output files open, then its folder.
            _release(exc)
            free = shutil.disk_usage(hand).free
            remove(out)
            if isinstance(exc, KeyboardInterrupt) or _terminated:
                raise  # cancelled: no record, the submitter says the job did not finish
            error = _failure(job.key, exc, free)
            if os.environ.get("SUBMITIT_EXECUTOR"):  # the job's log is all one sees there
                traceback.print_exception(exc, file=sys.stderr)
            error.__cause__ = exc  # as `raise ... from exc` below sets it
            if os.getpid() == self.launcher:  # the launching process: it keeps the traceback
                _RAISED[job.handback] = error
            failed = {"error": str(error), "kind": type(error).__name__, "notes": notes}
            handback.write(hand, handback.RESULT, {**failed, "tracking": tracked.tracking})
            raise error from exc
        finally:
            remove(out)
        result = {
            "outputs": handed,
            "metrics": tracked.metrics,
            "environment": env,
            "tracking": tracked.tracking,
            "written": files.written,
            "notes": notes,
        }
        handback.write(hand, handback.RESULT, result)
        return {"key": job.key}


def _failure(key: str, exc: BaseException, free: int) -> PipelineError:
    """A stage's failure in one line: bad input, a full disk, or what it raised."""
    if isinstance(exc, StageInputError):  # bad input, not a bug: no traceback
        return ConfigError(f"stage `{key}`: {exc}")
    # Libraries report a full disk in their own words (numpy: "N requested and M
    # written", torch: "iostream error"): a failure with the disk full is one.
    if free < _FULL_BELOW and not isinstance(exc, PipelineError):
        return NoSpace(
            f"stage `{key}` ran out of disk space writing its outputs; free space "
            "on the disk holding the workspace, or use a workspace on another disk "
            "(`--workspace DIR`), and rerun (stages that finished are kept)"
        )
    detail = exc if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"
    return StageFailed(f"stage `{key}` failed: {detail}")


_RAISED: dict[str, PipelineError] = {}


def raised(handback_folder: str) -> PipelineError | None:
    """The error a job in this process raised (with the stage's traceback), if it did."""
    return _RAISED.pop(handback_folder, None)


#: A failure's kind in a hand-back record, back to the error the submitter raises.
FAILURES: dict[str, type[PipelineError]] = {
    e.__name__: e for e in (ConfigError, NoSpace, StageFailed, PipelineError)
}


@contextlib.contextmanager
def _noting(notes: list[str]) -> Iterator[None]:
    """Gather the stage's notes (:func:`pipeline.spec.note`) while the block runs."""

    class Gather(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if getattr(record, NOTE, False):
                notes.append(record.getMessage())

    logger, handler = logging.getLogger("pipeline.progress"), Gather()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


_terminated: list[int] = []  # the signals of a cancel that reached this job


def _note_termination() -> None:
    """In a cluster job: note SIGTERM (a cancel), then let submitit's own handler run.

    A stage failing in the seconds between the cancel's SIGTERM and its SIGKILL (W&B's
    service process gone, say) was cancelled: it hands back no failure.
    """
    before = signal.getsignal(signal.SIGTERM)
    if not os.environ.get("SUBMITIT_EXECUTOR") or before is _on_term:
        return
    _before.append(before)
    signal.signal(signal.SIGTERM, _on_term)


_before: list[Any] = []


def _on_term(signum: int, frame: Any) -> None:
    _terminated.append(signum)
    before = _before[-1]
    if callable(before):
        before(signum, frame)
    elif before != signal.SIG_IGN:  # the default: end as SIGTERM ends a process
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


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
