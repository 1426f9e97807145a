"""The error hierarchy: one root, each kind also a matching builtin, each with its exit code."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PipelineError(Exception):
    """Root of every error this tool reports to a user as one line."""

    exit_code = 2


class UsageError(PipelineError, ValueError):
    """A command line that names something unknown or combines options badly."""


class ConfigError(PipelineError, ValueError):
    """A stage config or override that cannot be composed."""


class GraphError(PipelineError, ValueError):
    """Stage specs that do not form a valid DAG."""


class LockError(PipelineError, ValueError):
    """A lock file that cannot be read or does not match its schema."""


class StoreError(PipelineError, RuntimeError):
    """An artifact store that is missing, corrupt or asked for something absent."""


class VersionTaken(StoreError):
    """A version number asked for (a pull) holds other content in this store."""


class NoSpace(PipelineError, OSError):
    """The disk filled up while a stage wrote its outputs; nothing of it was kept."""


class StageFailed(PipelineError, RuntimeError):
    """A stage's task raised; its outputs were discarded."""

    exit_code = 1


class RemoteError(PipelineError, ConnectionError):
    """W&B could not be reached, refused us, or lacks what was asked for."""

    exit_code = 1


class NotReproduced(PipelineError, RuntimeError):
    """A ``--frozen`` run whose fingerprint or outputs differ from the lock."""

    exit_code = 1


def unknown_key(stage: str, key: str, known: Iterable[str], module: str) -> str:
    """The line for a key ``stage``'s config lacks: the closest known one, and the help.

    A key longer than any name (a pasted blob) is shown by its start and its length.
    """
    if len(key) > _LONGEST:
        shown = f"`{stage}.{key[:40]}...` ({len(key)} characters)"
    else:
        shown = f"`{stage}.{key}`{did_you_mean(f'{stage}.{key}', known)}"
    return f"unknown config key {shown} (`python -m {module} --help` lists the keys)"


#: Longer than any file name a config group could have (NAME_MAX on Linux and macOS).
_LONGEST = 255


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ``"; did you mean `x`?"`` suffix for the closest choice, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean `{close[0]}`?" if close else ""
