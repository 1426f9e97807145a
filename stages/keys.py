"""A stage's config keys with types, ranges and defaults: `python -m stages.<stage> --help`.

Types and ranges are read from the task's signature through pydantic's JSON schema (the
same declarations that check the values), defaults from the hydra-zen config.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hydra_zen import get_target

from pipeline.spec import StageSpec

_NAMES = {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "null": "None"}
_BOUNDS = (
    ("minimum", ">="),
    ("exclusiveMinimum", ">"),
    ("maximum", "<="),
    ("exclusiveMaximum", "<"),
)


def rows(spec: StageSpec, picked: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """``(key, type, default)`` for every key a user may set, group options' keys included.

    ``picked`` chooses group options other than the defaults (``{"model": "mlp"}``).
    """
    found = []
    chosen_in = {**_defaults_list(spec.config), **(picked or {})}
    for name, type_, default in _fields(spec.config, spec.task, spec.path_params):
        options = spec.groups.get(name)
        if not options:
            found.append((name, type_, default))
            continue
        chosen = chosen_in.get(name) or _option_of(options, default)
        found.append((name, "option (below)", chosen or "(none)"))
        if chosen in options:
            config = options[chosen]
            for key, sub_type, sub_default in _fields(config, get_target(config), frozenset()):
                found.append((f"{name}.{key}", sub_type, sub_default))
    return found


def table(spec: StageSpec, picked: Mapping[str, str] | None = None) -> str:
    """The rows as aligned text, one key per line, then each group's options."""
    found = [("key", "type", "default"), *rows(spec, picked)]
    width = [max(len(row[i]) for row in found) for i in range(2)]
    lines = [
        f"  {key:<{width[0]}}  {type_:<{width[1]}}  {default}".rstrip()
        for key, type_, default in found
    ]
    for group, options in sorted(spec.groups.items()):
        lines.append(
            f"options of {group}: {', '.join(sorted(options))} (to see one's keys: "
            f"python -m {spec.module} {group}=OPTION --help)"
        )
    return "\n".join(lines)


def _defaults_list(config: Any) -> dict[str, str]:
    """The group options a config's Hydra defaults list chooses: ``{"model": "cnn"}``."""
    chosen: dict[str, str] = {}
    fields = {f.name: f for f in dataclasses.fields(config)}
    if "defaults" in fields:
        for entry in _default(fields["defaults"], raw=True) or ():
            if isinstance(entry, Mapping):
                chosen.update({str(k): str(v) for k, v in entry.items()})
    return chosen


def _fields(
    config: Any, target: Callable[..., Any], skip: frozenset[str]
) -> list[tuple[str, str, Any]]:
    hints = _hints(target)
    found = []
    for field in dataclasses.fields(config):
        if field.name.startswith("_") or field.name in skip or field.name == "defaults":
            continue
        found.append((field.name, _type_text(hints.get(field.name)), _default(field)))
    return found


def _hints(target: Callable[..., Any]) -> dict[str, Any]:
    """Each parameter's annotation, evaluated one by one (one that names a type imported
    only for type checking, such as a return type, spoils none of the others)."""
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:
        pass
    found = {}
    space = getattr(target, "__globals__", {})
    for name, text in inspect.get_annotations(target).items():
        try:
            found[name] = eval(text, space) if isinstance(text, str) else text
        except Exception:  # shown as `any`
            continue
    return found


def _default(field: dataclasses.Field[Any], raw: bool = False) -> Any:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return None if raw else "(required)"
    if raw or dataclasses.is_dataclass(value) or isinstance(value, type):
        return value
    return str(list(value)) if isinstance(value, (list, tuple)) else str(value)


def _option_of(options: Mapping[str, Any], default: Any) -> str | None:
    """The group option the default config is (the one with its target), or None."""
    try:
        target = get_target(default)
    except Exception:
        return None
    for name, config in options.items():
        if get_target(config) is target:
            return name
    return None


def _type_text(annotation: Any) -> str:
    if annotation is None:
        return "any"
    from pydantic import TypeAdapter

    try:
        schema = TypeAdapter(annotation).json_schema()
    except Exception:  # not a type pydantic can describe (a callable): its Python name
        return getattr(annotation, "__name__", str(annotation))
    return _schema_text(schema)


def _schema_text(schema: Mapping[str, Any]) -> str:
    if "enum" in schema:
        return " | ".join(str(v) for v in schema["enum"])
    if "const" in schema:
        return str(schema["const"])
    if "anyOf" in schema:
        return " or ".join(_schema_text(s) for s in schema["anyOf"])
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_schema_text(schema.get('items', {}))}"
    text = _NAMES.get(str(kind), str(kind) if kind else "any")
    bounds = [f"{op} {schema[key]}" for key, op in _BOUNDS if key in schema]
    return " ".join([text, *bounds])


def help_template(spec: StageSpec, argv: Sequence[str]) -> str:
    """Hydra's `--help` page for the stage: what it does, then every key (Hydra's template)."""
    picked = dict(a.split("=", 1) for a in argv if a.split("=", 1)[0] in spec.groups)
    about = (spec.task.__doc__ or "").replace("``", "`").strip().splitlines()[:1]
    return "\n".join(
        [
            f"{spec.name}: {about[0] if about else spec.name}",
            "",
            f"usage: python -m {spec.module} [KEY=VALUE ...]",
            f"  in the pipeline: python -m pipeline run {spec.name} {spec.name}.KEY=VALUE ...",
            "",
            "== Keys ==",
            table(spec, picked),
            "",
            "Hydra's own flags: --hydra-help; the composed config: --cfg job",
        ]
    )
