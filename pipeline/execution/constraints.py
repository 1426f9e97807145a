"""The value constraints a stage declares in its signature, checked before anything runs.

A stage says what its config values may be where it declares them: in the annotations of
its task and of the callables its config builds (a model factory), with the ecosystem's
vocabulary: ``Annotated[int, pydantic.Field(ge=1)]``, ``Literal["cpu", "cuda"]``,
pydantic's ``PositiveInt``. pydantic checks each composed value against its parameter's
annotation, so a range error is one line naming the key, the value and the range, before
any stage runs, whether the value came from the command line, the lock or a sweep. A key
the callable has no parameter for (``+train.foo=1``) is refused the same way.

`pipeline.execution.compose` calls :func:`check` on each config it composes and :func:`check_value`
on each plain value it types, before caching either, so a config served from the
declarations cache was checked when it was made.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pipeline.core.errors import ConfigError, unknown_key
from pipeline.spec import StageSpec

#: A config entry naming what it builds (hydra-zen's ``builds``).
TARGET = "_target_"


def check(spec: StageSpec, config: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for the first value of ``config`` its declaration refuses."""
    for key, owner, param, value in _entries(spec.task, config, ""):
        _check_one(spec, key, owner, param, value)


def check_value(spec: StageSpec, base: Mapping[str, Any], key: str, value: Any) -> None:
    """:func:`check` for one value set at dotted ``key`` of the composed ``base`` config."""
    *parents, param = key.split(".")
    owner: Callable[..., Any] | None = spec.task
    node: Any = base
    for part in parents:
        node = node.get(part) if isinstance(node, Mapping) else None
        owner = _target(node)
        if owner is None:  # a plain mapping (no callable declares it): nothing to check
            return
    assert owner is not None
    _check_one(spec, key, owner, param, value)
    if isinstance(value, Mapping) and (target := _target(value)) is not None:
        for nested, inner_owner, inner, inner_value in _entries(target, value, f"{key}."):
            _check_one(spec, nested, inner_owner, inner, inner_value)


def _entries(
    owner: Callable[..., Any], config: Mapping[str, Any], prefix: str
) -> Iterator[tuple[str, Callable[..., Any], str, Any]]:
    """(dotted key, the callable taking it, parameter, value) for each entry, nested ones too."""
    for param, value in config.items():
        if _meta(str(param)):
            continue
        yield f"{prefix}{param}", owner, str(param), value
        if isinstance(value, Mapping) and (target := _target(value)) is not None:
            yield from _entries(target, value, f"{prefix}{param}.")


def _check_one(
    spec: StageSpec, key: str, owner: Callable[..., Any], param: str, value: Any
) -> None:
    accepted, open_ended = _parameters(owner)
    if param not in accepted and not open_ended:
        prefix = f"{spec.name}.{key}".rpartition(".")[0]
        hidden = spec.path_params if owner is spec.task else frozenset()
        known = [f"{prefix}.{p}" for p in sorted(accepted - hidden)]
        raise ConfigError(unknown_key(spec.name, key, known, spec.module))
    if isinstance(value, Mapping) and TARGET in value:
        return  # a config that builds the value: its own entries are checked
    adapter = _adapter(owner, param)
    if adapter is None:
        return
    from pydantic import ValidationError

    try:
        adapter.validate_python(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        reason = str(error["msg"])
        raise ConfigError(
            f"`{spec.name}.{key}={_show(value)}`: {reason[:1].lower()}{reason[1:]} "
            f"(declared by `{owner.__module__}.{owner.__qualname__}`)"
        ) from None


def _meta(key: str) -> bool:
    """Hydra's and hydra-zen's own keys (``_target_``, ``_partial_``, ``_convert_``, ...)."""
    return key.startswith("_") and key.endswith("_")


def _target(node: Any) -> Callable[..., Any] | None:
    """The callable a config entry builds, if it names one that can be imported."""
    if not isinstance(node, Mapping) or not isinstance(node.get(TARGET), str):
        return None
    return _locate(node[TARGET])


@functools.cache
def _locate(path: str) -> Callable[..., Any] | None:
    from hydra.utils import get_object

    try:
        found = get_object(path)
    except Exception:  # Hydra itself reports a target that cannot be imported
        return None
    return found if callable(found) else None


@functools.cache
def _parameters(owner: Callable[..., Any]) -> tuple[frozenset[str], bool]:
    """The keyword parameters of ``owner``, and whether it takes any keyword (``**kwargs``)."""
    try:
        params = inspect.signature(owner).parameters.values()
    except (TypeError, ValueError):
        return frozenset(), True
    named = frozenset(p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


@functools.cache
def _adapter(owner: Callable[..., Any], param: str) -> Any:
    """pydantic's validator of ``param``'s annotation, or ``None`` where there is none to use."""
    from pydantic import PydanticSchemaGenerationError, PydanticUndefinedAnnotation, TypeAdapter

    annotation = getattr(owner, "__annotations__", {}).get(param)
    if annotation is None:
        return None
    # One annotation at a time: another may name what exists only for type checkers
    # (a return type under TYPE_CHECKING), which must not stop this one being checked.
    holder = types.SimpleNamespace(__annotations__={param: annotation})
    try:
        hint = typing.get_type_hints(
            holder, globalns=getattr(owner, "__globals__", None), include_extras=True
        )[param]
        return TypeAdapter(hint)
    except (NameError, TypeError, PydanticSchemaGenerationError, PydanticUndefinedAnnotation):
        return None


def _show(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)
