"""Stage configs: sticky overrides merged, then composed by Hydra from the hydra-zen store."""

from __future__ import annotations

import copy
import errno
import functools
import json
import re
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.core.errors import ConfigError, unknown_key
from pipeline.core.overrides import override_key
from pipeline.execution import constraints
from pipeline.spec import StageSpec
from pipeline.state.declared import Declared


@dataclass(frozen=True)
class Composed:
    """A stage's resolved config (paths left out) and its config-group choices."""

    config: dict[str, Any]
    choices: dict[str, str]


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


class CacheMiss(LookupError):
    """The configs cache cannot answer, and only a declaration is at hand: take the full path."""


def compose_all(
    spec: StageSpec | Declared,
    override_sets: Sequence[Sequence[str]],
    cache: MutableMapping[str, Any] | None = None,
) -> list[Composed]:
    """:func:`compose` for each set of overrides, sharing Hydra's work between them.

    The members of a sweep differ mostly in plain values (``lr=0.01``). Members with the
    same structural overrides (group choices such as ``model=mlp``, ``+``/``~`` edits) are
    composed once by Hydra; each plain value is then typed once, by OmegaConf against the
    composed structured config, and set into a copy of the resolved dict. A config with
    interpolations, or a value OmegaConf refuses, takes the full path (for its error too).

    ``cache`` (`pipeline.state.declared`) keeps each of those results under the stage, the
    structural overrides and the value; what it holds is not asked of Hydra again. With a
    :class:`~pipeline.state.declared.Declared` stage only the cache can answer: a result it lacks
    raises :class:`CacheMiss`.
    """
    cache = {} if cache is None else cache
    typed_bases: dict[tuple[str, ...], Any] = {}  # Hydra's typed config, made on demand
    found = []
    for overrides in override_sets:
        structural = tuple(o for o in overrides if _structural(spec, o))
        plain = [o for o in overrides if not _structural(spec, o)]
        base = _cached_base(spec, structural, cache, typed_bases)
        values = [_cached_typed(spec, structural, o, cache, typed_bases, base) for o in plain]
        if base is None or any(v is _REFUSED for v in values):
            found.append(_cached_full(spec, overrides, cache))
            continue
        config = copy.deepcopy(base.config)
        for override, value in zip(plain, values, strict=True):
            _set(config, override_key(override), value)
        found.append(Composed(config, dict(base.choices)))
    return found


def _key(*parts: object) -> str:
    return json.dumps(parts)


def _full_spec(spec: StageSpec | Declared) -> StageSpec:
    if not isinstance(spec, StageSpec):
        raise CacheMiss(spec.name)
    return spec


def _cached_base(
    spec: StageSpec | Declared,
    structural: tuple[str, ...],
    cache: MutableMapping[str, Any],
    typed_bases: dict[tuple[str, ...], Any],
) -> Composed | None:
    key = _key("base", spec.name, structural)
    if key not in cache:
        full = _full_spec(spec)
        made = _base(full, structural)
        if made is not None:
            constraints.check(full, made[1].config)
            typed_bases[structural] = made[0]
        cache[key] = None if made is None else [made[1].config, made[1].choices]
    held = cache[key]
    return None if held is None else Composed(held[0], dict(held[1]))


def _cached_typed(
    spec: StageSpec | Declared,
    structural: tuple[str, ...],
    override: str,
    cache: MutableMapping[str, Any],
    typed_bases: dict[tuple[str, ...], Any],
    base: Composed | None,
) -> Any:
    key = _key("typed", spec.name, structural, override)
    if key not in cache:
        if base is None:
            return _REFUSED  # the full path composes it (and words its error)
        full = _full_spec(spec)
        if structural not in typed_bases:
            made = _base(full, structural)
            assert made is not None  # as `base` was made
            typed_bases[structural] = made[0]
        value = _typed(typed_bases[structural], override)
        if value is not _REFUSED:
            constraints.check_value(full, base.config, override_key(override), value)
        cache[key] = ["refused"] if value is _REFUSED else ["value", value]
    held = cache[key]
    return _REFUSED if held == ["refused"] else held[1]  # `_set` copies it into a config


def _cached_full(
    spec: StageSpec | Declared, overrides: Sequence[str], cache: MutableMapping[str, Any]
) -> Composed:
    key = _key("full", spec.name, list(overrides))
    if key not in cache:
        full = _full_spec(spec)
        made = compose(full, overrides)
        constraints.check(full, made.config)
        cache[key] = [made.config, made.choices]
    held = cache[key]
    return Composed(copy.deepcopy(held[0]), dict(held[1]))


_REFUSED = object()


def _structural(spec: StageSpec | Declared, override: str) -> bool:
    key = override_key(override)
    return override[0] in "+~" or "@" in key or key in spec.groups


def _base(spec: StageSpec, structural: tuple[str, ...]) -> tuple[Any, Composed] | None:
    """The composed config (typed nodes) and its resolved dict; ``None`` if it interpolates."""
    from omegaconf import OmegaConf

    cfg = _hydra(spec, structural)  # typed and struct: it checks values (a masked copy does not)
    composed = _composed(spec, cfg)
    raw = OmegaConf.to_container(OmegaConf.masked_copy(cfg, config_keys(spec, cfg)))
    if raw != composed.config:
        return None
    return cfg, composed


def _typed(cfg: Any, override_text: str) -> Any:
    """A plain override's value as the composed config types it, or ``_REFUSED``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        override = _parser(OverridesParser).parse_override(override_text)
        if override.is_sweep_override() or override.is_delete() or override.is_add():
            raise ValueError(override_text)
        path = override.get_key_element()
        if OmegaConf.select(cfg, path, default=_REFUSED) is _REFUSED:
            raise ValueError(path)  # an unknown key: the full path words the error
        OmegaConf.update(cfg, path, override.value(), merge=False)
        value = OmegaConf.select(cfg, path)
        return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    except (HydraException, OmegaConfBaseException, ValueError):
        return _REFUSED


@functools.cache
def _parser(kind: Any) -> Any:
    return kind.create()


def _set(config: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        config = config[part]
    config[last] = copy.deepcopy(value)


def compose(spec: StageSpec, overrides: Sequence[str]) -> Composed:
    """Resolve a stage's config; bad overrides become one-line :class:`ConfigError`."""
    return _composed(spec, _hydra(spec, overrides))


def _hydra(spec: StageSpec, overrides: Sequence[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize(version_base="1.3", config_path=None):
            return hydra_compose(spec.name, overrides=list(overrides), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_explain(spec, overrides, exc)) from exc
    except OSError as exc:  # Hydra looks a key up as a group's file: a name too long for one
        raise ConfigError(_unusable(spec, overrides, exc)) from exc


def _unusable(spec: StageSpec, overrides: Sequence[str], exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        key = max((override_key(o) for o in overrides), key=len)
        return unknown_key(spec.name, key, (), spec.module)
    return f"cannot apply overrides to `{spec.name}`: {exc.strerror or exc}"


def config_keys(spec: StageSpec, cfg: Any) -> list[str]:
    """The keys of a composed config that are the stage's values: not Hydra's, not paths."""
    return [str(k) for k in cfg if k != "hydra" and k not in spec.path_params]


def _composed(spec: StageSpec, cfg: Any) -> Composed:
    from omegaconf import OmegaConf

    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    assert isinstance(choices, dict)
    config = OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, config_keys(spec, cfg)), resolve=True
    )
    assert isinstance(config, dict)
    groups = {str(k): str(v) for k, v in choices.items() if not str(k).startswith("hydra")}
    return Composed({str(k): v for k, v in config.items()}, groups)


def _explain(spec: StageSpec, overrides: Sequence[str], exc: Exception) -> str:
    text = str(exc)
    if (m := re.search(r"Could not override '([^']+)'", text)) is not None:
        return unknown_key(spec.name, m.group(1), _keys(spec), spec.module)
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
