"""The no-op memo: a command that found nothing to do answers again at once, unchanged.

A `status` or a `run` that ran nothing records what it printed and the stat (size, mtime,
inode) of every file its answer depends on: the lock, the stage code and the tool's own
code, every file and folder of the artifact versions it found fresh, and a stamp file the
store touches whenever its index changes.
While none of them changed, the same command prints the same answer without composing
configs or importing networkx and Hydra (as make and ninja answer "nothing to do" from
stats). A file modified while the command ran is never trusted: nothing is recorded then.

Paths inside the workspace are kept relative to it, so a copied workspace checks its own
files (whose inodes differ: the copy answers afresh once) and never the original's. Source
files outside the store (the lock, the code) also keep their MD5: one whose stat changed but
whose bytes did not (`touch`, a `git checkout` back and forth) still vouches for the answer.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.core.paths import index_file, memo_dir, stages_package, tool_sources

# Libraries whose version could change a composed config, and so a plan (import names).
_LIBRARIES = ("hydra", "hydra_zen", "omegaconf", "networkx", "yaml")
# File times come from a coarse clock that lags by up to a few milliseconds.
_CLOCK_SLACK_NS = 50_000_000


# Files whose bytes, not only their stat, are kept: source files, not the store's data.
_HASHED_UP_TO = 4 << 20


def _stat(path: str) -> list[int] | None:
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode]


def _path(store: Path, command: Sequence[str]) -> Path:
    context = [
        list(command),
        sys.version,
        stages_package(),
        libraries(_LIBRARIES),
    ]
    name = hashlib.sha256(json.dumps(context).encode()).hexdigest()[:32]
    return memo_dir(store) / f"{name}.json"


def command_key(options: Mapping[str, Any]) -> list[str]:
    """A command as the memo knows it: every option but the workspace and the start time."""
    kept = {k: v for k, v in options.items() if k not in ("workspace", "started_ns")}
    return [json.dumps(kept, default=str)]


def libraries(names: Iterable[str]) -> list[list[Any]]:
    """Where each library is installed and the stat of its entry file, found without importing.

    Installing another version writes that file anew (another size, mtime or inode), so
    this stands for the version at a fraction of the cost of reading package metadata.
    """
    found = []
    for name in sorted(set(names)):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        origin = spec.origin if spec is not None else None
        found.append([name, origin, _stat(origin) if origin else None])
    return found


def recall(store: Path, command: Sequence[str]) -> str | None:
    """What ``command`` printed last time, if nothing it depends on changed since.

    Any memo that cannot be read as one (damaged, planted, of another version) is ignored.
    """
    try:
        memo: dict[str, Any] = json.loads(_path(store, command).read_text(encoding="utf-8"))
        workspace = store.parent
        for path, stat, md5 in memo["watched"]:
            here = str(workspace / path)  # an absolute path stays itself
            if _stat(here) != stat and (md5 is None or _md5(here) != md5):
                return None
        return str(memo["output"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _md5(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "md5").hexdigest()
    except OSError:
        return None


def remember(
    store: Path, command: Sequence[str], output: str, watched: Iterable[Path], since_ns: int
) -> bool:
    """Record ``output`` for ``command``; nothing if a watched file changed after ``since_ns``."""
    workspace = store.parent.resolve()
    rows = []
    for path in sorted({Path(p).absolute() for p in watched}):
        stat = _stat(str(path))
        if stat is not None and stat[1] >= since_ns - _CLOCK_SLACK_NS:
            return False
        inside = path.is_relative_to(workspace)
        source = stat is not None and _plain_file(stat) and stat[0] <= _HASHED_UP_TO
        md5 = _md5(str(path)) if source and not path.is_relative_to(store.resolve()) else None
        rows.append((str(path.relative_to(workspace)) if inside else str(path), stat, md5))
    target = _path(store, command)
    target.parent.mkdir(exist_ok=True)
    tmp = target.with_name(f".{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps({"watched": rows, "output": output}), encoding="utf-8")
    os.replace(tmp, target)
    return True


def dependencies(store: Path, sources: Iterable[Path], folders: Iterable[Path]) -> list[Path]:
    """Every file an answer depends on: the given sources (the lock, the stages' code),
    every file of the given folders (the versions found fresh), the index, the stamp the
    store touches when it changes, and the tool's own code."""
    found = [index_file(store), stamp(store), *tool_sources(), *sources]
    for folder in folders:
        found += [folder, *folder.rglob("*")]
    return found


def _plain_file(stat: list[int]) -> bool:
    return (stat[3] & 0o170000) == 0o100000


def stamp(store: Path) -> Path:
    """The file the store touches after each change to its index: memos watch it."""
    return memo_dir(store) / "stamp"


def touch(store: Path) -> None:
    """Mark that the store's index changed: every memo recorded before is void."""
    path = stamp(store)
    path.parent.mkdir(exist_ok=True)
    path.touch()
