"""`dvc_free_lock.yaml`: what each stage resolved, written deterministically, validated on load."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.core.errors import LockError
from pipeline.core.paths import LOCK_NAME
from pipeline.spec import safe_name

#: This machine, as temporary names carry it (`-` is their separator).
SCHEMA = 1


@functools.cache
def pyyaml() -> tuple[Any, Any, Any]:
    """PyYAML, its loader and its dumper: imported when a lock is parsed or written as YAML.

    A lock answered from its parsed cache (`.pipeline/lock.json`) needs none of it.
    """
    import yaml

    base: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    class Dumper(base):  # type: ignore[misc, valid-type]
        """Plain YAML: repeated values are written out, never as anchors and aliases."""

        def ignore_aliases(self, data: Any) -> bool:
            return True

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        """Safe YAML that refuses a key given twice (YAML itself keeps the last silently)."""

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[str] = set()
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"`{key.value}` appears twice", key.start_mark
                        )
                    seen.add(key.value)
            return super().construct_mapping(node, deep=deep)

    return yaml, Loader, Dumper


@dataclass(frozen=True)
class InputPin:
    """An artifact version a stage used."""

    name: str
    version: str
    digest: str


@dataclass(frozen=True)
class OutputPin:
    """An artifact version a stage logged."""

    name: str
    type: str
    version: str
    digest: str
    size: int
    files: int


@dataclass(frozen=True)
class CachedRun:
    """An earlier successful run of a fingerprint, as the store's index recalls it."""

    outputs: Mapping[str, OutputPin]
    metrics: Mapping[str, Any]
    environment: Mapping[str, str] = field(default_factory=dict)


#: What the store says of a version it never held (a fresh clone's): the plan then says
#: `pull` fetches it.
NOT_HERE = "not in this store"


@dataclass(frozen=True)
class StageLock:
    """One stage's block: everything its last successful run resolved."""

    fingerprint: str
    code_digest: str
    code: Mapping[str, str]
    config: Mapping[str, Any]
    overrides: tuple[str, ...] = ()
    inputs: Mapping[str, InputPin] = field(default_factory=dict)
    outputs: Mapping[str, OutputPin] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    # Versions of the libraries that can change the bits (recorded, not fingerprinted).
    environment: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Lock:
    """The whole lock: stage name to block."""

    stages: Mapping[str, StageLock] = field(default_factory=dict)

    def with_stage(self, name: str, entry: StageLock) -> Lock:
        """A copy with one stage's block replaced."""
        return replace(self, stages={**self.stages, name: entry})

    def without_stage(self, name: str) -> Lock:
        """A copy with one stage's block removed."""
        return replace(self, stages={k: v for k, v in self.stages.items() if k != name})


def to_dict(lock: Lock) -> dict[str, Any]:
    """Plain data for the YAML document."""
    stages = {}
    for name, s in lock.stages.items():
        stages[name] = {
            "fingerprint": s.fingerprint,
            "code": {"digest": s.code_digest, "files": dict(s.code)},
            "config": dict(s.config),
            "overrides": list(s.overrides),
            "inputs": {k: vars(v) for k, v in s.inputs.items()},
            "outputs": {k: vars(v) for k, v in s.outputs.items()},
            "metrics": dict(s.metrics),
            "environment": dict(s.environment),
        }
    return {"schema": SCHEMA, "stages": stages}


def dumps(lock: Lock) -> str:
    """The lock as YAML text: sorted keys, block style, stable floats."""
    yaml, _, dumper = pyyaml()
    text = yaml.dump(to_dict(lock), Dumper=dumper, sort_keys=True, default_flow_style=False)
    return str(text)


def block(data: Any, name: str) -> StageLock:
    """Stage ``name``'s block from plain data, checked as :func:`loads` checks it.

    Raises ``ValueError`` where it does not pass (a cache's copy is then not used).
    """
    try:
        _check(data, _STAGE, ("stages", name))
    except _Mismatch as exc:
        raise ValueError(f"stage `{name}`: {exc}") from exc
    return _stage(data)


def _from_dict(data: Mapping[str, Any]) -> Lock:
    return Lock({str(name): _stage(block) for name, block in sorted(data["stages"].items())})


class _Checked:
    """A string shape that must also pass a test (names become folders in the store)."""

    def __init__(self, test: Callable[[str], bool], expected: str) -> None:
        self.test, self.expected = test, expected


_NAME = _Checked(safe_name, "a name of letters, digits, `-`, `_` and `.` (no `/` or `..`)")
_VERSION = _Checked(lambda v: re.fullmatch(r"v[0-9]+", v) is not None, "a version like `v0`")

# Expected shape of one stage block: a type, or a nested shape for mappings,
# or ``(shape,)`` for "a mapping from any name to this shape".
_PIN = {"name": _NAME, "version": _VERSION, "digest": str}
_OUT = {**_PIN, "type": str, "size": int, "files": int}
_STAGE = {
    "fingerprint": str,
    "code": {"digest": str, "files": (str,)},
    "config": dict,
    "overrides": list,
    "inputs": (_PIN,),
    "outputs": (_OUT,),
    "metrics": dict,
    "environment": (str,),
}
_DOCUMENT = {"schema": int, "stages": (_STAGE,)}


def loads(text: str, source: str = LOCK_NAME) -> Lock:
    """Parse and validate lock text; errors name the file and line."""
    yaml, loader, _ = pyyaml()
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise LockError(
            f"`{source}{line}` is not valid YAML ({getattr(exc, 'problem', exc)}); "
            "fix it, or delete it to start a new lock"
        ) from exc
    if data is None:
        return Lock()
    try:
        _check(data, _DOCUMENT, ())
    except _Mismatch as bad:  # only now parse again for line numbers: loading stays fast
        root = yaml.compose(text, Loader=loader)
        at = _line(root, bad.path) if root else 1
        here = ".".join(bad.path) or "the top level"
        raise LockError(
            f"`{source}:{at}`: `{here}` should be {bad.expected}; fix that line or "
            "delete the stage's block and rerun the stage"
        ) from None
    if data["schema"] != SCHEMA:
        raise LockError(
            f"`{source}` has schema {data['schema']}, this version reads schema {SCHEMA}; "
            "upgrade the tool or delete the lock"
        )
    return _from_dict(data)


def _stage(b: Mapping[str, Any]) -> StageLock:
    return StageLock(
        fingerprint=b["fingerprint"],
        code_digest=b["code"]["digest"],
        code=dict(b["code"]["files"]),
        config=dict(b["config"]),
        overrides=tuple(str(o) for o in b["overrides"]),
        inputs={k: InputPin(**v) for k, v in b["inputs"].items()},
        outputs={k: OutputPin(**v) for k, v in b["outputs"].items()},
        metrics=dict(b["metrics"]),
        environment=dict(b["environment"]),
    )


class _Mismatch(Exception):
    def __init__(self, path: tuple[str, ...], expected: str) -> None:
        super().__init__(path, expected)
        self.path, self.expected = path, expected


_EXPECTED = {dict: "a mapping", list: "a list", str: "a string", int: "an integer"}


def _check(value: Any, shape: Any, path: tuple[str, ...]) -> None:
    if isinstance(shape, _Checked):
        _check(value, str, path)
        if not shape.test(value):
            raise _Mismatch(path, f"{shape.expected}, not `{value}`")
        return
    if isinstance(shape, type):
        if not isinstance(value, shape) or (shape is int and isinstance(value, bool)):
            raise _Mismatch(path, _EXPECTED[shape])
        return
    if not isinstance(value, dict):
        raise _Mismatch(path, "a mapping")
    if isinstance(shape, tuple):
        for key, item in value.items():
            _check(item, shape[0], (*path, str(key)))
        return
    for key, sub in shape.items():
        if key not in value:
            raise _Mismatch(path, f"a mapping with the key `{key}`")
        _check(value[key], sub, (*path, key))


def _line(node: Any, path: tuple[str, ...]) -> int:
    """The line of the value at ``path`` in a composed document."""
    yaml = pyyaml()[0]
    for key in path:
        if not isinstance(node, yaml.MappingNode):
            break
        node = next(v for k, v in node.value if str(k.value) == key)
    return int(node.start_mark.line) + 1
