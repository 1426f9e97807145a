"""Overrides as the user types them: split by stage, keyed, and merged with those recorded.

`train.lr=0.01` addresses stage `train`; the lock records each stage's overrides, and a
new value for a key replaces the recorded one. Plain strings in, plain strings out: what
an override means is Hydra's to say, when the config is composed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from pipeline.core.errors import UsageError, did_you_mean


def split_overrides(args: Iterable[str], stages: Sequence[str]) -> dict[str, list[str]]:
    """``["train.lr=0.1"]`` -> ``{"train": ["lr=0.1"]}``; ``prepare-data.`` is accepted too."""
    found: dict[str, list[str]] = {}
    for arg in args:
        match = re.fullmatch(r"([+~]*)([\w-]+)\.([^=]+)(=.*)?", arg, flags=re.S)
        if match is None:
            raise UsageError(
                f"override `{arg}` should look like `STAGE.KEY=VALUE`, e.g. `train.lr=0.01`"
            )
        prefix, stage, key, value = match.groups()
        if "${" in (value or ""):
            raise UsageError(
                f"override `{arg}` holds an interpolation; the lock records an override as "
                "written, so its value must not depend on the environment or on other keys: "
                "give the value itself (let the shell expand it: `train.epochs=$EP`)"
            )
        stage = stage.replace("-", "_")
        if stage not in stages:
            raise UsageError(
                f"override `{arg}` names unknown stage `{stage}`{did_you_mean(stage, stages)}"
            )
        found.setdefault(stage, []).append(f"{prefix}{key}{value or ''}")
    return found


def override_key(override: str) -> str:
    """The config key an override sets: ``+model.width=3`` -> ``model.width``."""
    return override.lstrip("+~").split("=", 1)[0]


def merge(recorded: Sequence[str], new: Sequence[str]) -> tuple[str, ...]:
    """Recorded overrides with ``new`` applied: a new value for a key replaces the old one.

    Choosing another option of a config group also drops the recorded keys
    inside that group, since they belonged to the option being replaced.
    """
    merged = {override_key(o): o for o in recorded}
    for key in map(override_key, new):
        merged = {k: v for k, v in merged.items() if not k.startswith(f"{key}.")}
    merged.update({override_key(o): o for o in new})
    return tuple(merged[k] for k in sorted(merged))
