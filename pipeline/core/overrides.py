"""Configs in the keys a user types: overrides split, keyed and merged, configs shown.

`train.lr=0.01` addresses stage `train`; the lock records each stage's overrides, and a
new value for a key replaces the recorded one. Plain strings in, plain strings out: what
an override means is Hydra's to say, when the config is composed. A composed config is
shown back in the same keys (`model: cnn`, `model.hidden: 128`), and so are its changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

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


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys: ``{"model": {"width": 8}}`` -> ``{"model.width": 8}``."""
    flat: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, Mapping) and item:
            flat.update(flatten(item, path + "."))
        else:
            flat[path] = item
    return flat


_TARGET = "_target_"


def user_config(config: Mapping[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """A config flattened into the keys a user types: ``model: cnn``, ``model.hidden: 128``.

    Hydra's and hydra-zen's own keys (``_partial_``, ``_convert_``, ...) are left out; a
    node's ``_target_`` becomes the node's own key, holding the group option chosen (an
    override ``model=resnet18``) or else the name of what it builds (``cnn``). The task's
    own ``_target_`` is left out: the stage names it.
    """
    chosen = {override_key(o): o.partition("=")[2] for o in overrides}
    shown: dict[str, Any] = {}
    for key, value in flatten(config).items():
        *parents, last = key.split(".")
        if last == _TARGET and parents:
            node = ".".join(parents)
            shown[node] = chosen.get(node, str(value).rpartition(".")[2])
        elif not (last.startswith("_") and last.endswith("_")):
            shown[key] = value
    return shown


def config_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], missing: Any = None
) -> list[tuple[str, Any, Any]]:
    """(key, old, new) for each key of two :func:`user_config` results that differs.

    Where a node's option changed (``model: cnn -> resnet18``), that one line says it: the
    keys under it, which follow from the option, are not listed one by one.
    """
    changed = [
        (k, old.get(k, missing), new.get(k, missing))
        for k in sorted(set(old) | set(new))
        if old.get(k, missing) != new.get(k, missing)
    ]
    nodes = {key.rpartition(".")[0] for key in (*old, *new) if "." in key}
    switched = [key for key, _, _ in changed if key in nodes]
    return [c for c in changed if not any(c[0].startswith(f"{node}.") for node in switched)]
