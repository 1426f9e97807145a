"""A wave's job: what it is told and returns, and what runs around the stage inside it.

The task describes the job to the W&B callback (`StageRun`) and returns what it made
(`StageResult`); around the stage run its environment, signals, notes and failure. A job
may run in the launching process, a joblib worker or a SLURM job on another host;
nothing here opens the store's index.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import logging
import os
import platform
import signal
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError, NoSpace, PipelineError, StageFailed
from pipeline.spec import NOTE, StageInputError, pin_cpu_numerics

# Libraries whose version can change a stage's bits; recorded in the lock, not fingerprinted.
_LIBRARIES = ("numpy", "torch", "torchvision", "scikit-learn", "matplotlib", "mnist1d")
_FULL_BELOW = 1 << 20  # bytes free under which a failing stage is taken to have filled the disk


@dataclass(frozen=True)
class ArtifactRef:
    """An artifact version a stage run reads or writes, as W&B will know it."""

    name: str
    type: str
    path: Path
    version: str = ""
    digest: str = ""
    new: bool = True  # False: this content was already a version (a re-log moves no alias)


@dataclass(frozen=True)
class StageRun:
    """The job in progress, as the task describes it to the callback before it starts."""

    stage: str
    config: Mapping[str, Any]
    inputs: Mapping[str, ArtifactRef]
    fingerprint: str = ""
    group: str | None = None
    workspace: Path = field(default_factory=Path.cwd)
    media: frozenset[str] = frozenset()
    #: The W&B run the callback opened (only the callback writes it), for the job's record.
    tracking: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StageResult:
    """What a finished job made: the task returns it, and Hydra hands it to `on_job_end`."""

    outputs: Mapping[str, ArtifactRef]
    metrics: Mapping[str, Any]
    environment: Mapping[str, str] = field(default_factory=dict)


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


def failure(key: str, exc: BaseException, free: int) -> PipelineError:
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


#: The errors jobs in this process raised, by hand-back folder (see :func:`raised`).
RAISED: dict[str, PipelineError] = {}


def raised(handback_folder: str) -> PipelineError | None:
    """The error a job in this process raised (with the stage's traceback), if it did."""
    return RAISED.pop(handback_folder, None)


#: A failure's kind in a hand-back record, back to the error the submitter raises.
FAILURES: dict[str, type[PipelineError]] = {
    e.__name__: e for e in (ConfigError, NoSpace, StageFailed, PipelineError)
}


@contextlib.contextmanager
def noting(notes: list[str]) -> Iterator[None]:
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


terminated: list[int] = []  # the signals of a cancel that reached this job


def note_termination() -> None:
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
    terminated.append(signum)
    before = _before[-1]
    if callable(before):
        before(signum, frame)
    elif before != signal.SIG_IGN:  # the default: end as SIGTERM ends a process
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def release(exc: BaseException) -> None:
    """Drop the local variables of a failed stage's frames; the traceback still prints."""
    seen: BaseException | None = exc
    while seen is not None:
        traceback.clear_frames(seen.__traceback__)
        seen = seen.__cause__ or seen.__context__
    gc.collect()


_watched: list[int] = []  # the process (pid) whose parent is watched, once per process


def end_with(launcher: int) -> None:
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
