"""The lock file on disk: read with a parsed cache, written atomically, one block updated.

`pipeline.core.lock` is the lock as data and YAML text; this module is the file: it is
written only when its text changed (temporary file, fsync, rename), read through a JSON
cache of its parsed blocks, or block by block when it is large, and updated one stage's
block at a time so that every other block stays byte for byte as it was.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pipeline.core import lock
from pipeline.core.errors import LockError
from pipeline.core.lock import Lock, StageLock
from pipeline.core.paths import HOST


def write(path: Path, found: Lock, cache: Path | None = None) -> bool:
    """Write atomically, only if the text changed; return whether it was written."""
    return _write(path, lock.dumps(found), found, cache)


def _write(path: Path, text: str, found: Lock, cache: Path | None) -> bool:
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
        _save(cache, text, found)
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
        return lock.loads(text, source=source)
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
    parsed = lock.loads(text, source=source)
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
        if saved["md5"] != _md5(text) or saved["schema"] != lock.SCHEMA:
            return None
        blocks = saved["blocks"]
        if not isinstance(blocks, dict) or not all(isinstance(b, str) for b in blocks.values()):
            return None
        full = functools.cache(lambda: lock.loads(text))
        return Lock(_Blocks(blocks, lambda name, raw: json.loads(raw), full))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # no cache, not for this text, or not a lock: parse the YAML


def _by_block(text: str, source: str) -> Lock | None:
    """The lock as blocks of YAML text by stage name, if it has the layout `lock.dumps` writes.

    ``None`` where it has not (another schema line, a key that is not plain, the same
    stage twice): then the whole text is parsed as usual.
    """
    head = f"schema: {lock.SCHEMA}\nstages:\n"
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
    yaml, loader, _ = lock.pyyaml()

    def parse(name: str, block: str) -> Any:
        try:
            doc = yaml.load("stages:\n" + block, Loader=loader)
        except yaml.YAMLError as exc:
            raise ValueError(name) from exc
        if not isinstance(doc, dict) or list(doc) != ["stages"] or list(doc["stages"]) != [name]:
            raise ValueError(name)
        return doc["stages"][name]

    return Lock(_Blocks(raw, parse, functools.cache(lambda: lock.loads(text, source))))


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
                self._parsed[name] = lock.block(self._parse(name, self._raw[name]), name)
            except (ValueError, TypeError, KeyError, AttributeError):
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
    new_text = lock.dumps(new)
    if not _others_kept(text, new_text, stage, entry):
        new = _parse(text, path.name, None).with_stage(stage, entry)
        new_text = lock.dumps(new)
    _write(path, new_text, new, cache)
    return new


def _blocks(text: str) -> list[str]:
    """The lock text cut into its stage blocks (each starts at a two-space indented key)."""
    pieces = _BLOCK_START.split(text)
    return pieces[2:] if pieces[0] == "" else pieces[1:]  # the first is `schema`, `stages:`


_BLOCK_START = re.compile(r"(?m)^(?=  [^ ])")


def _others_kept(old: str, new: str, stage: str, entry: StageLock) -> bool:
    """Whether every block but ``stage``'s reads in ``new`` exactly as in ``old``."""
    head = _blocks(lock.dumps(Lock({stage: entry})))[0].split("\n", 1)[0] + "\n"
    return [b for b in _blocks(old) if not b.startswith(head)] == [
        b for b in _blocks(new) if not b.startswith(head)
    ]


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def _save(cache: Path, text: str, found: Lock) -> None:
    """Keep ``found`` as JSON for ``text``, each block JSON gives back exactly (only a cache)."""
    blocks = {}
    for name, block in lock.to_dict(found)["stages"].items():
        raw = json.dumps(block, sort_keys=True)
        try:
            if lock.block(json.loads(raw), name) != found.stages[name]:
                return
        except ValueError:  # a block JSON cannot give back as it is: keep no cache
            return
        blocks[name] = raw
    data = json.dumps({"md5": _md5(text), "schema": lock.SCHEMA, "blocks": blocks}, sort_keys=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
    tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, cache)
