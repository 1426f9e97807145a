"""Garbage collection of the store (`gc`): drop the versions no lock references, and their objects.

Crash-safe in two steps: the index forgets the versions in one transaction, then their
folders (renamed into `tmp/` first, so none is ever half there) and the objects no
remaining version uses are removed. What a killed `gc` left is found again by the next.
`run` and `pull` hold the store shared (:func:`in_use`) from planning to their last lock
write; `gc` holds it alone (:func:`collect`), so it never sees a version a run just made
and has not yet pinned, nor removes an object a commit is about to link.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core import lock, lockfile
from pipeline.core.errors import StoreError, UsageError
from pipeline.core.paths import LOCK_NAME, STORE_DIR, locks_dir
from pipeline.state.index import COLLECTED, busy_bound
from pipeline.state.objects import CHECKPOINTS, object_name
from pipeline.state.store import Store, open_existing

_GATE = locks_dir(Path(STORE_DIR)) / "gc.lock"


@dataclass(frozen=True)
class Garbage:
    """What a `gc` removes: versions (name, number, size), folders, objects, bytes freed."""

    versions: tuple[tuple[str, int, int], ...]
    folders: tuple[Path, ...]
    objects: tuple[Path, ...]
    freed: int
    # Interrupted runs' checkpoints (a run in progress holds gc off): folders and bytes.
    checkpoints: tuple[Path, ...] = ()
    checkpoint_bytes: int = 0


def referenced(locks: Iterable[lock.Lock]) -> set[tuple[str, str]]:
    """Every (name, ``vN``) and (name, digest) a lock's blocks use or make."""
    found: set[tuple[str, str]] = set()
    for pinned in locks:
        for entry in pinned.stages.values():
            pins: list[lock.InputPin | lock.OutputPin] = [*entry.inputs.values()]
            for pin in [*pins, *entry.outputs.values()]:
                found |= {(pin.name, pin.version), (pin.name, pin.digest)}
    return found


def unpinned(
    versions: Iterable[tuple[str, int, str]], keep: set[tuple[str, str]]
) -> list[tuple[str, int]]:
    """The (name, number) of each version (name, number, digest) that ``keep`` misses."""
    return [
        (name, number)
        for name, number, digest in versions
        if (name, f"v{number}") not in keep and (name, digest) not in keep
    ]


def human(size: int) -> str:
    """A byte count as people read it: ``512 B``, ``4.2 MB`` (powers of 1000, as `du -h --si`)."""
    value, unit = float(size), "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if round(value, 1) < 1000 or unit == "TB":
            break
        value /= 1000
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


@contextlib.contextmanager
def in_use(workspace: Path, waiting: Callable[[], None]) -> Iterator[None]:
    """Hold the store against `gc` (shared: runs do not exclude each other); waits for a gc."""
    with _gate(workspace, fcntl.LOCK_SH, waiting, None):
        yield


@contextlib.contextmanager
def _gate(
    workspace: Path, mode: int, waiting: Callable[[], None], bound: float | None
) -> Iterator[None]:
    path = workspace / _GATE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as gate:  # a flock: a killed holder leaves nothing that blocks
        try:
            fcntl.flock(gate, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting()
            _wait(gate, mode, bound)
        try:
            yield
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)


def _wait(gate: Any, mode: int, bound: float | None) -> None:
    if bound is None:
        fcntl.flock(gate, mode)
        return
    deadline = time.monotonic() + bound
    while True:
        try:
            fcntl.flock(gate, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"a `run` or `pull` in this workspace held the store for {bound:g} s "
                    f"(`fuser {_GATE}` names it); let it finish, then rerun "
                    "`python -m pipeline gc`"
                ) from None
            time.sleep(0.1)


def locks(workspace: Path, all_commits: bool) -> tuple[list[lock.Lock], int]:
    """The workspace's lock and, with ``all_commits``, every committed revision of it."""
    path = workspace / LOCK_NAME
    if not path.is_file():
        raise UsageError(
            f"`{path}` does not exist: `gc` keeps what the lock pins, so it would remove "
            "every version; run `python -m pipeline run` (or check out the lock) first"
        )
    found = [lockfile.read(path)]
    if not all_commits:
        return found, 0
    top = _git(workspace, "rev-parse", "--show-toplevel")
    if top is None:
        raise UsageError(
            f"`--all-commits` keeps what every committed lock pins, but `{workspace}` is not "
            "in a git repository; drop the flag, or `git init` and commit the lock"
        )
    rel = path.resolve().relative_to(Path(top.strip()).resolve()).as_posix()
    revisions = (_git(workspace, "log", "--all", "--format=%H", "--", rel) or "").split()
    for revision in revisions:
        text = _git(workspace, "show", f"{revision}:{rel}")
        if text is not None:  # None: the commit deleted the lock
            found.append(lock.loads(text, source=f"{revision[:12]}:{rel}"))
    return found, len(revisions)


def _git(workspace: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=workspace, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:  # no git installed: no repository either
        return None
    return done.stdout if done.returncode == 0 else None


def collect(
    workspace: Path, all_commits: bool, dry_run: bool, waiting: Callable[[], None]
) -> tuple[Garbage, int]:
    """Remove (or with ``dry_run`` only find) what no lock references; and the revisions read.

    The locks are read once the store is held: a run that finished meanwhile has pinned
    its new versions by then.
    """
    store = open_existing(workspace)
    try:
        if dry_run:  # reads only: not even the index's change stamp moves
            pinned, revisions = locks(workspace, all_commits)
            return _decide(store, store.index, referenced(pinned)), revisions
        with _gate(workspace, fcntl.LOCK_EX, waiting, busy_bound()):
            pinned, revisions = locks(workspace, all_commits)
            with store.transaction() as db:  # decided and forgotten under the write lock
                garbage = _decide(store, db, referenced(pinned))
                _forget(store, db, garbage)
            for folder in garbage.folders:
                drop_folder(store, folder)
            for obj in garbage.objects:
                obj.unlink(missing_ok=True)
            for folder in garbage.checkpoints:
                shutil.rmtree(folder, ignore_errors=True)
            _prune(store.root / "objects")
            _prune(store.root / "artifacts")
        return garbage, revisions
    finally:
        store.close()


def _decide(store: Store, db: sqlite3.Connection, keep: set[tuple[str, str]]) -> Garbage:
    rows = db.execute("SELECT name, version, digest, size, manifest FROM versions").fetchall()
    gone = set(unpinned(((n, v, d) for n, v, d, _, _ in rows), keep))
    kept = [(n, v, m) for n, v, _, _, m in rows if (n, v) not in gone]
    used = {object_name(md5) for _, _, m in kept for md5 in json.loads(m).values()}
    objects_dir = store.root / "objects"
    objects = sorted(p for p in objects_dir.glob("*/*") if f"{p.parent.name}/{p.name}" not in used)
    there = {(n, f"v{v}") for n, v, _ in kept}
    # Folders the index does not have: those it now forgets, and those a killed gc left.
    folders = sorted(
        p
        for p in (store.root / "artifacts").glob("*/v*")
        if p.name[1:].isdigit() and (p.parent.name, p.name) not in there
    )
    versions = tuple(sorted((n, v, s) for n, v, _, s, _ in rows if (n, v) in gone))
    checkpoints = tuple(sorted((store.root / CHECKPOINTS).glob("*")))
    freed = _freed([*folders, *objects])
    return Garbage(
        versions, tuple(folders), tuple(objects), freed, checkpoints, _freed(checkpoints)
    )


def _freed(paths: Iterable[Path]) -> int:
    """The bytes freed by removing ``paths``: each file whose every link goes with them."""
    links: dict[tuple[int, int], list[os.stat_result]] = {}
    for path in paths:
        files = [path] if not path.is_dir() else [p for p in path.rglob("*") if not p.is_dir()]
        for file in files:
            st = file.lstat()
            links.setdefault((st.st_dev, st.st_ino), []).append(st)
    return sum(sts[0].st_size for sts in links.values() if len(sts) >= sts[0].st_nlink)


def _forget(store: Store, db: sqlite3.Connection, garbage: Garbage) -> None:
    """Drop the versions' rows, move `latest`, and keep their numbers from being given again."""
    highest: dict[str, int] = {}
    for name, number, _ in garbage.versions:
        db.execute("DELETE FROM versions WHERE name=? AND version=?", (name, number))
        highest[name] = max(number, highest.get(name, -1))
    for name, number in highest.items():
        db.execute(
            "INSERT OR REPLACE INTO aliases SELECT ?, ?, MAX(v) FROM (SELECT ? AS v UNION ALL "
            "SELECT version FROM aliases WHERE name=? AND alias=?)",
            (name, COLLECTED, number, name, COLLECTED),
        )
        db.execute("DELETE FROM aliases WHERE name=? AND alias='latest'", (name,))
        db.execute(
            "INSERT INTO aliases SELECT ?, 'latest', MAX(version) FROM versions WHERE name=? "
            "HAVING MAX(version) IS NOT NULL",
            (name, name),
        )
    root = len(str(store.root)) + 1
    for path in [*garbage.folders, *garbage.objects]:
        key = str(path)[root:]
        db.execute("DELETE FROM stat_cache WHERE path=? OR substr(path, 1, ?)=?", _keys(key))


def _keys(key: str) -> tuple[str, int, str]:
    return key, len(key) + 1, key + "/"


def drop_folder(store: Store, folder: Path) -> None:
    """Take a version folder out of sight in one rename, then delete it."""
    aside = store.temp()
    try:
        folder.rename(aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def _prune(top: Path) -> None:
    """Remove the empty folders left under ``top`` (an artifact's, an object prefix's)."""
    for sub in top.iterdir():
        if sub.is_dir():
            with contextlib.suppress(OSError):  # not empty
                sub.rmdir()


def summary(garbage: Garbage, dry_run: bool, revisions: int) -> list[str]:
    """What `gc` says: one line per version on a dry run, then the total."""
    names = ", ".join(f"{n}:v{v}" for n, v, _ in garbage.versions)
    what = "the lock" if not revisions else f"the lock or its {revisions} committed revisions"
    lines = [f"would remove {n}:v{v} ({human(s)})" for n, v, s in garbage.versions if dry_run]
    if garbage.versions:
        done = "would remove" if dry_run else "removed"
        freed = f"{human(garbage.freed)} {'would be ' if dry_run else ''}freed"
        count = len(garbage.versions)
        lines.append(f"{done} {count} version{'s' * (count != 1)} ({names}), {freed}")
    else:
        lines.append(f"nothing to remove: every version is pinned by {what}")
        if garbage.freed or garbage.folders or garbage.objects:
            verb = "would remove" if dry_run else "removed"
            lines.append(f"{verb} what an interrupted gc left, {human(garbage.freed)}")
    if garbage.checkpoints:
        verb, count = "would remove" if dry_run else "removed", len(garbage.checkpoints)
        lines.append(
            f"{verb} the checkpoints of {count} interrupted run{'s' * (count != 1)} "
            f"({human(garbage.checkpoint_bytes)}); rerunning those configs starts them over"
        )
    if dry_run:
        lines.append("dry run: nothing was changed")
    return lines
