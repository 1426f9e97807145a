"""What changed between two locks, stage by stage, in words."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.core.lock import Lock, StageLock
from pipeline.core.overrides import config_changes, user_config

_UNSET = object()


@dataclass(frozen=True)
class StageDiff:
    """One stage's changes: ``added``, ``removed`` or ``changed``, with a line per change."""

    stage: str
    status: str
    changes: tuple[str, ...]


def diff(old: Lock, new: Lock) -> list[StageDiff]:
    """Per stage: config keys, code, inputs, outputs, metrics (with deltas), environment."""
    found = []
    for stage in sorted(set(old.stages) | set(new.stages)):
        before, after = old.stages.get(stage), new.stages.get(stage)
        if before is None or after is None:
            status = "added" if before is None else "removed"
            found.append(StageDiff(stage, status, ()))
        elif changes := _stage(before, after):
            found.append(StageDiff(stage, "changed", tuple(changes)))
    return found


def _show(value: Any) -> str:
    return "(unset)" if value is _UNSET else "null" if value is None else str(value)


def _pairs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    keys = sorted(set(old) | set(new))
    found = [(k, old.get(k, _UNSET), new.get(k, _UNSET)) for k in keys]
    return [(k, a, b) for k, a, b in found if a is _UNSET or b is _UNSET or a != b]


def _pin(pin: Any) -> str:
    return "(none)" if pin is _UNSET else f"{pin.name}:{pin.version} ({pin.digest[:8]})"


def _delta(old: Any, new: Any) -> str:
    numbers = (int, float)
    if isinstance(old, numbers) and isinstance(new, numbers) and not isinstance(old, bool):
        return f" ({new - old:+.6g})"
    return ""


def _stage(old: StageLock, new: StageLock) -> list[str]:
    lines = [
        f"config {k}: {_show(a)} -> {_show(b)}"
        for k, a, b in config_changes(
            user_config(old.config, old.overrides), user_config(new.config, new.overrides), _UNSET
        )
    ]
    lines += [f"code changed: {path}" for path, _, _ in _pairs(old.code, new.code)]
    lines += [f"input {k}: {_pin(a)} -> {_pin(b)}" for k, a, b in _pairs(old.inputs, new.inputs)]
    lines += [f"output {k}: {_pin(a)} -> {_pin(b)}" for k, a, b in _pairs(old.outputs, new.outputs)]
    lines += [
        f"metric {k}: {_show(a)} -> {_show(b)}{_delta(a, b)}"
        for k, a, b in _pairs(old.metrics, new.metrics)
    ]
    lines += [
        f"environment {k}: {_show(a)} -> {_show(b)}"
        for k, a, b in _pairs(old.environment, new.environment)
    ]
    return lines
