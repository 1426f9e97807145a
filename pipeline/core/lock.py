"""`dvc_free_lock.yaml`: what each stage resolved, written deterministically, validated on load."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.core.errors import LockError
from pipeline.core.paths import HOST, LOCK_NAME
from pipeline.spec import safe_name

#: This machine, as temporary names carry it (`-` is their separator).
SCHEMA = 1


@functools.cache
def _yaml() -> tuple[Any, Any, Any]:
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
    chosen = {}
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        chosen[key] = value
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
    yaml, _, dumper = _yaml()
    text = yaml.dump(to_dict(lock), Dumper=dumper, sort_keys=True, default_flow_style=False)
    return str(text)


def write(path: Path, lock: Lock, cache: Path | None = None) -> bool:
    """Write atomically, only if the text changed; return whether it was written."""
    return _write(path, dumps(lock), lock, cache)


def _write(path: Path, text: str, lock: Lock, cache: Path | None) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    # Named after this host and process: the store removes it if the process dies first.
    prefix = f"{temp_prefix(path.name)}{HOST}-{os.getpid()}-"
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    try:
        os.fchmod(fd, _mode(path))  # mkstemp's 0600 would make a committed lock private
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if cache is not None:
        _save(cache, text, lock)
    return True


def temp_prefix(name: str) -> str:
    """How the new text of lock ``name`` is named until it is renamed over the lock."""
    return f".{name}."


def _mode(path: Path) -> int:
    """The lock's permissions: those it has, or what the umask gives a new file (0644)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def read(path: Path, cache: Path | None = None) -> Lock:
    """Load and validate; a missing file is an empty lock.

    With ``cache``, the parsed lock is also kept there as JSON under the MD5 of its text,
    so that an unchanged lock (a sweep's holds thousands of blocks) loads without parsing
    its YAML again. A cached block passes the same checks as the YAML; one that does not,
    or cannot be read, is taken from the YAML. A lock of more than :data:`BY_BLOCK` bytes
    that the cache does not hold (a sweep's, just checked out) is read block by block:
    each block is parsed and checked when a command first needs it (`lock verify` checks
    them all), so that `status` of four stages parses four blocks, not forty thousand.
    """
    if not path.exists():
        return Lock()
    return _parse(_text(path), path.name, cache)


def _text(path: Path) -> str:
    """The lock's text; a folder, or bytes that are not UTF-8, are bad input named as such."""
    if path.is_dir():
        raise LockError(f"`{path.name}` is a folder, not a lock file; move it away or delete it")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LockError(
            f"`{path.name}` is not UTF-8 text (a binary file, or another encoding such as "
            "UTF-16); restore it (`git checkout dvc_free_lock.yaml`) or delete it"
        ) from None


def _parse(text: str, source: str, cache: Path | None) -> Lock:
    """The lock in ``text`` (see :func:`read`)."""
    if cache is None:
        return loads(text, source=source)
    found, keep = _parse_later(text, source, cache)
    if keep is not None:
        keep()
    return found


def read_later(path: Path, cache: Path) -> tuple[Lock, Callable[[], None]]:
    """:func:`read`, and what keeps the parsed lock in ``cache``: to call once all went well.

    A command on bad input then writes nothing, not even the parsed lock.
    """
    if not path.exists():
        return Lock(), lambda: None
    text = _text(path)
    found, keep = _parse_later(text, path.name, cache)
    if keep is None:
        return found, lambda: None

    def keep_if_unchanged() -> None:  # a run may have written the lock since
        if path.exists() and path.read_text(encoding="utf-8") == text:
            keep()

    return found, keep_if_unchanged


def _parse_later(text: str, source: str, cache: Path) -> tuple[Lock, Callable[[], None] | None]:
    """The lock in ``text``, and what keeps it in ``cache`` (``None``: the cache answered)."""
    found = _cached(cache, text)
    if found is None and len(text) > BY_BLOCK:
        found = _by_block(text, source)
    if found is not None:
        return found, None
    parsed = loads(text, source=source)
    return parsed, functools.partial(_save, cache, text, parsed)


BY_BLOCK = 1 << 20  # bytes: a larger lock is read block by block (see `read`)


def _cached(cache: Path, text: str) -> Lock | None:
    """The lock kept for ``text``, if the cache holds one for it.

    Each stage block stays JSON text until it is asked for, and is checked then
    (:class:`_Blocks`); a sweep's lock of forty thousand blocks opens in the time it
    takes to read it.
    """
    try:
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved["md5"] != _md5(text) or saved["schema"] != SCHEMA:
            return None
        blocks = saved["blocks"]
        if not isinstance(blocks, dict) or not all(isinstance(b, str) for b in blocks.values()):
            return None
        full = functools.cache(lambda: loads(text))
        return Lock(_Blocks(blocks, lambda name, raw: json.loads(raw), full))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # no cache, not for this text, or not a lock: parse the YAML


def _by_block(text: str, source: str) -> Lock | None:
    """The lock as blocks of YAML text by stage name, if it has the layout `dumps` writes.

    ``None`` where it has not (another schema line, a key that is not plain, the same
    stage twice): then the whole text is parsed as usual.
    """
    head = f"schema: {SCHEMA}\nstages:\n"
    if not text.startswith(head):
        return None
    raw: dict[str, str] = {}
    blocks = iter(_blocks(text))
    for block in blocks:
        first, _, rest = block.partition("\n")
        if first.startswith("  ? ") and not rest:  # a key over 128 characters: `? key`
            name, block = first[4:], block + next(blocks, "")  # and its `: value` block
            if not block.split("\n")[1].startswith("  : "):
                return None
        elif first.endswith(":"):
            name = first[2:-1]
        else:
            return None
        if not _PLAIN_KEY.fullmatch(name) or name.lower() in _NOT_STRINGS or name in raw:
            return None
        raw[name] = block
    yaml, loader, _ = _yaml()

    def parse(name: str, block: str) -> Any:
        try:
            doc = yaml.load("stages:\n" + block, Loader=loader)
        except yaml.YAMLError as exc:
            raise ValueError(name) from exc
        if not isinstance(doc, dict) or list(doc) != ["stages"] or list(doc["stages"]) != [name]:
            raise ValueError(name)
        return doc["stages"][name]

    return Lock(_Blocks(raw, parse, functools.cache(lambda: loads(text, source))))


# A block's first line when its key is a plain YAML scalar that reads as a string.
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-\[\]=,|+]*")
_NOT_STRINGS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})


class _Blocks(Mapping[str, StageLock]):
    """Stage blocks kept as text, each parsed and checked when first asked for.

    A block that cannot be parsed alone or does not pass the lock's checks comes from
    ``whole`` (the whole text parsed and checked as usual: its error names the line).
    """

    def __init__(
        self,
        raw: Mapping[str, str],
        parse: Callable[[str, str], Any],
        whole: Callable[[], Lock],
    ) -> None:
        self._raw, self._parse, self._whole = raw, parse, whole
        self._parsed: dict[str, StageLock] = {}

    def __getitem__(self, name: str) -> StageLock:
        if name not in self._parsed:
            if name not in self._raw:
                raise KeyError(name)
            try:
                data = self._parse(name, self._raw[name])
                _check(data, _STAGE, ("stages", name))
                self._parsed[name] = _stage(data)
            except (ValueError, TypeError, KeyError, AttributeError, _Mismatch):
                self._parsed[name] = self._whole().stages[name]
        return self._parsed[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


def update(path: Path, stage: str, entry: StageLock, cache: Path | None = None) -> Lock:
    """Replace one stage's block in the lock file; returns the lock as written.

    The other blocks must come out byte for byte as they were: if a cached parse would
    change one of them, the cache lied, and the YAML itself is parsed and used instead.
    """
    text = _text(path) if path.exists() else ""
    new = _parse(text, path.name, cache).with_stage(stage, entry)
    new_text = dumps(new)
    if not _others_kept(text, new_text, stage, entry):
        new = _parse(text, path.name, None).with_stage(stage, entry)
        new_text = dumps(new)
    _write(path, new_text, new, cache)
    return new


def _blocks(text: str) -> list[str]:
    """The lock text cut into its stage blocks (each starts at a two-space indented key)."""
    pieces = _BLOCK_START.split(text)
    return pieces[2:] if pieces[0] == "" else pieces[1:]  # the first is `schema`, `stages:`


_BLOCK_START = re.compile(r"(?m)^(?=  [^ ])")


def _others_kept(old: str, new: str, stage: str, entry: StageLock) -> bool:
    """Whether every block but ``stage``'s reads in ``new`` exactly as in ``old``."""
    head = _blocks(dumps(Lock({stage: entry})))[0].split("\n", 1)[0] + "\n"
    return [b for b in _blocks(old) if not b.startswith(head)] == [
        b for b in _blocks(new) if not b.startswith(head)
    ]


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def _save(cache: Path, text: str, lock: Lock) -> None:
    """Keep ``lock`` as JSON for ``text``, each block JSON gives back exactly (only a cache)."""
    blocks = {}
    for name, block in to_dict(lock)["stages"].items():
        raw = json.dumps(block, sort_keys=True)
        if _stage(json.loads(raw)) != lock.stages[name]:
            return
        blocks[name] = raw
    data = json.dumps({"md5": _md5(text), "schema": SCHEMA, "blocks": blocks}, sort_keys=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
    tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, cache)


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
    yaml, loader, _ = _yaml()
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
    yaml = _yaml()[0]
    for key in path:
        if not isinstance(node, yaml.MappingNode):
            break
        node = next(v for k, v in node.value if str(k.value) == key)
    return int(node.start_mark.line) + 1
