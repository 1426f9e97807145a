"""What a stage declares: its task, its config, the artifacts it uses and logs; its progress."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import re
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Name of the parameter through which every stage receives its output folder.
OUT_PARAM = "out"

# Artifact names, versions and aliases become folder names in the store: letters, digits,
# `-`, `_` and `.` only (as W&B allows), never `..`, so none can leave the store.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def safe_name(text: str) -> bool:
    """Whether ``text`` can name an artifact, version or alias (and a folder in the store)."""
    return _SAFE_NAME.fullmatch(text) is not None and ".." not in text


#: Who hears a stage's progress besides its log: the W&B callback adds its run's `log`.
LISTENERS: list[Callable[[Mapping[str, float]], None]] = []
_progress = logging.getLogger("pipeline.progress")
#: The attribute that marks a log record as a :func:`note`.
NOTE = "pipeline_note"


def report(stage: str, **row: float) -> None:
    """Report one step of a stage's progress: ``report("train", epoch=3, train_loss=0.21)``.

    The row becomes one line of the stage's log (``train: epoch 3  train_loss 0.21``), which
    Hydra prints and keeps in the job's log file, and goes to each of :data:`LISTENERS` (the
    W&B callback logs it as history, so W&B draws learning curves). Stage code calls this
    and knows nothing of either.
    """
    _progress.info("%s: %s", stage, row_text(row))
    for listener in list(LISTENERS):
        listener(dict(row))


def note(stage: str, text: str) -> None:
    """One line of the stage's log that is not a row of numbers: ``train: resumed from epoch 3``.

    A job on a cluster writes its log there; the launching process prints its notes.
    """
    _progress.info("%s: %s", stage, text, extra={NOTE: True})


_CHECKPOINTS: ContextVar[Path | None] = ContextVar("pipeline_checkpoints", default=None)


def checkpoint_dir() -> Path | None:
    """Where the running stage keeps state that must survive a kill, or None (no pipeline).

    The runner gives each run a folder in the store's scratch space named by the run's
    fingerprint, so a rerun of the same fingerprint (after a kill, a preemption, a SLURM
    requeue) finds it; the runner removes it once the stage's outputs are committed.
    """
    return _CHECKPOINTS.get()


@contextlib.contextmanager
def checkpointing(folder: Path | None) -> Iterator[None]:
    """Make ``folder`` the :func:`checkpoint_dir` of the stage run inside the block."""
    token = _CHECKPOINTS.set(folder)
    try:
        yield
    finally:
        _CHECKPOINTS.reset(token)


def row_text(row: Mapping[str, Any]) -> str:
    """Numbers as a line people read: ``epoch 3  train_loss 0.2134`` (4 significant digits)."""
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())


# On x86-64, torch picks its CPU code paths by the CPU it finds, and each path rounds
# differently: the same stage on two machines gave two model digests.  ATen's own kernels
# are pinned to AVX2 (which x86-64 CPUs of the last decade have; AVX-512 ones take it too).
# MKL is pinned to its COMPATIBLE branch, the one Intel documents for Intel and other
# CPUs alike (it leaves out rcpps/rsqrtps, whose results differ between vendors); its
# other branches, AVX2 included, are Intel-only and fall back to dispatching by the CPU
# elsewhere.  oneDNN is capped at AVX2 for stages of your own; ours switch oneDNN and
# NNPACK off (`stages.models.portable_kernels`), as they also choose kernels by the CPU.
# A value the user set is kept (and recorded).
CPU_PATHS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"}


def pin_cpu_numerics() -> str:
    """Pin torch's CPU code paths (:data:`CPU_PATHS`) before any math; returns what is in effect.

    Must run before the process's first tensor operation: torch reads these once.
    """
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return machine
    for name, value in CPU_PATHS.items():
        os.environ.setdefault(name, value)
    return " ".join([machine, *(f"{name}={os.environ[name]}" for name in CPU_PATHS)])


class StageInputError(ValueError):
    """Raised by a stage (or its ``check``) for unusable input or config, not for a bug.

    The command line reports it as bad input: one line, exit code 2, no traceback.
    """


@dataclass(frozen=True)
class Output:
    """An artifact a stage logs.

    ``name`` is the logical name other stages list in ``uses``; ``type`` is the
    W&B artifact type.  ``artifact`` is the stored (and W&B) artifact name, a
    ``str.format`` template over the stage's config-group choices, for example
    ``"dataset-{dataset}"`` becomes ``dataset-digits``; empty means ``name``.
    ``media`` also shows the artifact's PNG files as images in the stage's W&B run.
    """

    name: str
    type: str
    artifact: str = ""
    media: bool = False

    def artifact_name(self, choices: Mapping[str, str]) -> str:
        """The stored artifact name for these config-group choices."""
        return self.artifact.format_map(dict(choices)) if self.artifact else self.name


@dataclass(frozen=True, eq=False)
class StageSpec:
    """One pipeline stage.

    The task is a plain function ``task(<input>=Path, ..., out=Path, **config)``
    returning a flat dict of summary metrics.  Each used artifact arrives as a
    read-only folder in the parameter named after it; each logged artifact is
    written to ``out / <output name>``.  ``config`` is the hydra-zen config of
    the task (``builds(task, populate_full_signature=True, ...)``) and
    ``groups`` maps a config group to its options (``{"model": {"mlp": ...}}``).
    An input listed in ``fan_in`` gathers every member of a sweep: the task gets a
    mapping ``{member label: folder}`` (``{"default": folder}`` outside a sweep).
    ``check``, if given, looks at a member's resolved config before anything runs and
    raises :class:`StageInputError` for input that cannot work (a missing dataset folder),
    so that nothing is written; it must be quick and import nothing heavy.
    """

    name: str
    task: Callable[..., Mapping[str, Any]]
    config: Any
    uses: tuple[str, ...] = ()
    logs: tuple[Output, ...] = ()
    fan_in: tuple[str, ...] = ()
    groups: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    check: Callable[[Mapping[str, Any]], None] | None = None

    @property
    def module(self) -> str:
        """Dotted name of the module that defines the task."""
        return self.task.__module__

    @property
    def path_params(self) -> frozenset[str]:
        """Task parameters the runner fills with paths, not config values."""
        return frozenset((*self.uses, OUT_PARAM))
