"""Stage configs: sticky overrides merged, then composed by Hydra from the hydra-zen store."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError, UsageError, did_you_mean
from pipeline.spec import StageSpec


@dataclass(frozen=True)
class Composed:
    """A stage's resolved config (paths left out) and its config-group choices."""

    config: dict[str, Any]
    choices: dict[str, str]


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
        stage = stage.replace("-", "_")
        if stage not in stages:
            raise UsageError(
                f"override `{arg}` names unknown stage `{stage}`{did_you_mean(stage, stages)}"
            )
        found.setdefault(stage, []).append(f"{prefix}{key}{value or ''}")
    return found


def sweep_values(stage: str, overrides: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["lr=1e-3,1e-2", "epochs=3"]`` -> ``[("lr", ["0.001", "0.01"]), ("epochs", ["3"])]``.

    Hydra's own override grammar decides what a sweep is (commas, ``range(...)``,
    ``choice(...)``), so values read as they would in ``python app.py -m ...``.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"cannot read the sweep of `{stage}`: {first}") from exc
    found = []
    for override in parsed:
        if override.is_sweep_override():
            values = list(override.sweep_string_iterator())
        else:
            values = [override.get_value_element_as_str()]
        found.append((override.get_key_element(), values))
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


def register(specs: Iterable[StageSpec]) -> None:
    """Put each stage's config and group options into Hydra's config store."""
    from hydra_zen import ZenStore

    store = ZenStore(name="lineage", overwrite_ok=True)
    for spec in specs:
        store(spec.config, name=spec.name)
        for group, options in spec.groups.items():
            for option, conf in options.items():
                store(conf, group=group, name=option)
    store.add_to_hydra_store(overwrite_ok=True)


def compose(spec: StageSpec, overrides: Sequence[str]) -> Composed:
    """Resolve a stage's config; bad overrides become one-line :class:`ConfigError`."""
    from hydra import compose as hydra_compose
    from hydra import initialize
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize(version_base="1.3", config_path=None):
            cfg = hydra_compose(spec.name, overrides=list(overrides), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_explain(spec, overrides, exc)) from exc
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    assert isinstance(choices, dict)
    keep = [str(k) for k in cfg if k != "hydra" and k not in spec.path_params]
    config = OmegaConf.to_container(OmegaConf.masked_copy(cfg, keep), resolve=True)
    assert isinstance(config, dict)
    groups = {str(k): str(v) for k, v in choices.items() if not str(k).startswith("hydra")}
    return Composed({str(k): v for k, v in config.items()}, groups)


def _explain(spec: StageSpec, overrides: Sequence[str], exc: Exception) -> str:
    text = str(exc)
    if (m := re.search(r"Could not override '([^']+)'", text)) is not None:
        key = m.group(1)
        known = _keys(spec)
        return (
            f"unknown config key `{spec.name}.{key}`"
            f"{did_you_mean(f'{spec.name}.{key}', known)} "
            f"(`python -m {spec.module} --help` lists the keys)"
        )
    if (m := re.search(r"Could not find '([^']+)/([^']+)'", text)) is not None:
        group, option = m.groups()
        options = ", ".join(sorted(spec.groups.get(group, {})))
        return f"unknown option `{option}` for `{spec.name}.{group}`; choose one of: {options}"
    typed = re.search(
        r"override (\S+?)=(\S*)(?s:.*)could not be converted to (\w+)", f"{text}\n{exc.__cause__}"
    )
    if typed:
        key, value, kind = typed.groups()
        return (
            f"`{spec.name}.{key}={value}`: expected a value of type {kind.lower()}, "
            f"got `{value}` (`python -m {spec.module} --help` shows each key's type)"
        )
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    cause = f": {exc.__cause__}".splitlines()[0] if exc.__cause__ else ""
    return f"cannot apply overrides {' '.join(overrides)} to `{spec.name}`: {first}{cause}"


def _keys(spec: StageSpec) -> list[str]:
    from omegaconf import OmegaConf

    def walk(node: Any, prefix: str) -> Iterable[str]:
        if isinstance(node, Mapping):
            for k, v in node.items():
                yield from walk(v, f"{prefix}.{k}")
        yield prefix

    base = OmegaConf.to_container(OmegaConf.structured(spec.config), resolve=False)
    keys = list(walk(base, spec.name))
    keys += [f"{spec.name}.{g}" for g in spec.groups]
    return keys
