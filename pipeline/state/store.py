"""The artifact store in `.pipeline/`: objects, version folders, SQLite index, stat cache."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from pipeline.core import lockfile, paths
from pipeline.core.errors import StoreError, VersionTaken
from pipeline.core.lock import NOT_HERE, CachedRun, InputPin, OutputPin
from pipeline.core.paths import STORE_DIR
from pipeline.spec import safe_name
from pipeline.state import index, memo
from pipeline.state.handback import owner_alive
from pipeline.state.index import Index
from pipeline.state.objects import Files, Staged, StatRow, object_name, remove
from pipeline.state.runs import RunIndex
from pipeline.state.statcache import StatCache

log = logging.getLogger(__name__)


def open_existing(workspace: Path) -> Store:
    """The store of a workspace where something already ran."""
    if not (workspace / STORE_DIR).is_dir():
        raise StoreError(
            f"`{workspace}` has no `{STORE_DIR}` store: nothing ran there yet "
            "(run `python -m pipeline run`, or pass --workspace)"
        )
    return Store(workspace)


class Store:
    """Artifact versions by content, with the index of runs that made and used them."""

    def __init__(self, workspace: Path) -> None:
        self.root = workspace / STORE_DIR
        for sub in ("objects", "artifacts", "tmp", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._index = Index(self.root)
        self._db = self._index.db
        self._transaction = self._index.transaction
        self.runs = RunIndex(self._db, self._transaction)
        self.stat_cache = StatCache(self._db, self.root)
        self.files = Files(self.root, self.stat_cache.hashes, self.stat_cache.remember)
        self._clean_abandoned()

    def _clean_abandoned(self) -> None:
        """Remove what killed processes of this host left half-written.

        That is their folders in `tmp/`, and a lock's new text not yet renamed over it
        (`.dvc_free_lock.yaml.HOST-PID-XXXX`, beside the lock).
        """
        lock_temps = self.root.parent.glob(f"{lockfile.temp_prefix(paths.LOCK_NAME)}*")
        for entry in [*(self.root / "tmp").iterdir(), *lock_temps]:
            if not owner_alive(entry.name.removeprefix(lockfile.temp_prefix(paths.LOCK_NAME))):
                remove(entry)

    def close(self) -> None:
        """Close the index."""
        self.stat_cache.flush()
        self._db.close()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction on the index, waiting for other writers as a commit does."""
        return self._transaction()

    @property
    def index(self) -> sqlite3.Connection:
        """The index, to read (writes go through :meth:`transaction`)."""
        return self._db

    def temp(self) -> Path:
        """A fresh path in `tmp/`: what is left there by a killed process is removed later."""
        return self.files.temp()

    # -- artifacts -------------------------------------------------------------
    def path(self, name: str, version: str) -> Path:
        """The read-only folder of an artifact version."""
        if not (safe_name(name) and safe_name(version)):
            raise StoreError(
                f"artifact `{name}:{version}` cannot be in the store: names and versions are "
                "letters, digits, `-`, `_` and `.` (no `/` or `..`)"
            )
        return self.root / "artifacts" / name / version

    def staging(self) -> Path:
        """A new empty folder on the store's file system for a stage to write into."""
        folder = self.files.temp()
        folder.mkdir()
        return folder

    def handback(self) -> Path:
        """A new folder for a job's records (:mod:`pipeline.state.handback`), outside `tmp/`.

        A store open does not clear it: what a killed submitter's jobs hand back there is
        booked by the next `run` (:func:`pipeline.state.booking.adopt`).
        """
        folder = self.root / "handback" / self.files.temp().name
        folder.mkdir(parents=True)
        return folder

    def checkpoints(self, fingerprint: str) -> Path:
        """The scratch folder of a run's checkpoints (:meth:`Files.checkpoints`)."""
        return self.files.checkpoints(fingerprint)

    def commit(self, folder: Path, name: str, type_: str) -> OutputPin:
        """Store a folder's files as a version of ``name``; identical content reuses its version."""
        return self.commit_version(folder, name, type_)[0]

    def commit_version(
        self,
        folder: Path,
        name: str,
        type_: str,
        version: str | None = None,
        digest: str | None = None,
    ) -> tuple[OutputPin, bool]:
        """Store a folder as a version of ``name``; the pin, and whether the version is new.

        Identical content reuses its version. ``version`` (a pull of what a lock pins)
        asks for that number; it must be free, or already hold this content. With
        ``digest``, content that does not hash to it is refused and nothing is stored
        (a download that is not what was pinned). ``latest``
        is the newest version, as on W&B: a re-commit of old content does not move it.

        Objects are hard links of the staged files (a link appears whole; a copy goes to a
        temporary name and is renamed); the version folder is built aside and renamed into
        place inside the index transaction, so a version is visible only once all its
        files are in place.
        """
        self.path(name, "v0")  # the name is safe before anything is written
        staged = self.files.hash_output(folder, name, type_)
        if digest is not None and staged.digest != digest:
            raise StoreError(
                f"artifact `{name}` {version or ''}: the files have digest {staged.digest}, "
                f"not the expected {digest}; refused, nothing was stored"
            )
        made: set[str] = set()
        with self.reserving([name]):
            self.files.put_objects(folder, staged, made)
            with self._transaction() as db:
                row = db.execute(
                    "SELECT version FROM versions WHERE name=? AND digest=?", (name, staged.digest)
                ).fetchone()
                if row is None:
                    number = index.free_number(db, name, version)
                    index.insert(db, staged, number)
                else:
                    number = row[0]
                    if version is not None and f"v{number}" != version:
                        raise VersionTaken(
                            f"artifact `{name}`: this content is `v{number}` in the store, not "
                            f"`{version}`; the store and the lock disagree (a store with its "
                            "own history): pull into a fresh clone, or rerun the stage"
                        )
                # A folder for a version the index did not have is a crash's leftover.
                self.files.materialise(name, f"v{number}", staged.manifest, row is None, made)
                index.move_latest(db, name)
                self.stat_cache.flush()
        return staged.pin(f"v{number}"), row is None

    @contextmanager
    def reserving(self, names: Iterable[str]) -> Iterator[None]:
        """Hold the version numbers of these artifacts for this process while the block runs.

        A wave's jobs build their new versions' folders under numbers the submitter gave
        them (:meth:`numbers`) before the index records them; the other writers of these
        names (another `run`, a `pull`) wait meanwhile. File locks, taken in name order,
        so a killed holder leaves nothing that blocks.
        """
        with ExitStack() as stack:
            for name in sorted(set(names)):
                claim = FileLock(paths.locks_dir(self.root) / f"artifact-{name}.lock")
                try:
                    claim.acquire(timeout=0)
                except Timeout:
                    log.warning("waiting for another process storing versions of `%s`", name)
                    claim.acquire()
                stack.callback(claim.release)
            yield

    def numbers(self, name: str) -> tuple[dict[str, str], int]:
        """What a job needs to number a version of ``name``: the versions by digest, the next."""
        rows = self._db.execute(
            "SELECT digest, version FROM versions WHERE name=?", (name,)
        ).fetchall()
        return {d: f"v{v}" for d, v in rows}, index.free_number(self._db, name, None)

    def record(
        self, pin: OutputPin, manifest: Mapping[str, str], written: Iterable[StatRow] = ()
    ) -> tuple[OutputPin, bool]:
        """Record a version a job built (its folder in place); the pin, and whether it is new.

        The job chose the number (:meth:`numbers`, under :meth:`reserving`); content that
        another member of the wave stored first keeps that member's version, and the
        duplicate folder goes. ``written`` are the job's stat rows of the files it wrote:
        each is remembered only if the file still has that size, mtime and inode.
        """
        number = int(pin.version.removeprefix("v"))
        with self._transaction() as db:
            self.stat_cache.vouch(written)
            row = db.execute(
                "SELECT version FROM versions WHERE name=? AND digest=?", (pin.name, pin.digest)
            ).fetchone()
            new = row is None
            if new:
                if index.indexed(db, pin.name, number):
                    # Taken since (the job's submitter died, another run numbered anew):
                    # the next number.
                    number = index.free_number(db, pin.name, None)
                # The job's folder, whole (its stat rows vouch for it), or built again from
                # the objects: another job may have built this number since, and died.
                self.files.materialise(pin.name, f"v{number}", manifest, False, set())
                index.insert(db, Staged(pin.name, pin.type, manifest, pin.digest, pin.size), number)
                index.move_latest(db, pin.name)
            elif row[0] != number:  # the same content twice in one wave: the first one's
                if not index.indexed(db, pin.name, number):
                    remove(self.path(pin.name, pin.version))
                number = row[0]
            self.stat_cache.flush()
        return replace(pin, version=f"v{number}"), new

    def resolve(self, name: str, ref: str) -> InputPin | None:
        """An artifact version by version (``v3``) or alias (``latest``)."""
        row = index.version_row(self._db, name, ref)
        return None if row is None else InputPin(name, f"v{row[0]}", row[2])

    def intact(self, pin: OutputPin) -> bool:
        """Whether the version folder holds exactly the files its digest promises."""
        return self.damage(pin) is None

    def damage(self, pin: OutputPin, rehash: bool = False) -> str | None:
        """What is wrong with a version, ``None`` if nothing.

        A file is hashed again when its size, mtime or inode changed since it was last
        hashed (the stat cache), or always with ``rehash``.
        """
        row = index.version_row(self._db, pin.name, pin.version)
        if row is None:
            return NOT_HERE
        if row[2] != pin.digest:
            return f"the store's {pin.version} has digest {row[2]}, not {pin.digest}"
        manifest: dict[str, str] = json.loads(row[5])
        return self.files.damage(self.path(pin.name, pin.version), manifest, rehash)

    def verify(self, pin: OutputPin) -> str | None:
        """What is wrong with a version, rehashing every file (no cache): ``None`` if nothing.

        A damaged version's files and objects leave the stat cache, so that every later
        check sees the damage (a same-size edit with its mtime put back fools a stat) and
        the next commit of the same content rewrites them from the rebuilt bits.
        """
        problem = self.damage(pin, rehash=True)
        row = index.version_row(self._db, pin.name, pin.version) if problem is not None else None
        if row is not None:
            manifest: dict[str, str] = json.loads(row[5])
            folder = self.path(pin.name, pin.version)
            objects = self.root / "objects"
            self.stat_cache.forget(
                [
                    *(folder / rel for rel in manifest),
                    *(objects / object_name(md5) for md5 in manifest.values()),
                ]
            )
            memo.touch(self.root)
        return problem

    def all_versions(self) -> list[dict[str, Any]]:
        """Every artifact version: name, version, type, digest, size, files, path."""
        rows = self._db.execute(
            "SELECT name, version, type, digest, size, files FROM versions ORDER BY name, version"
        ).fetchall()
        return [
            {
                "name": n,
                "version": f"v{v}",
                "type": t,
                "digest": d,
                "size": s,
                "files": f,
                "path": self.path(n, f"v{v}"),
            }
            for n, v, t, d, s, f in rows
        ]

    def versions(self, name: str) -> list[str]:
        """The versions of an artifact, oldest first."""
        rows = self._db.execute(
            "SELECT version FROM versions WHERE name=? ORDER BY version", (name,)
        ).fetchall()
        return [f"v{v}" for (v,) in rows]

    # -- runs ------------------------------------------------------------------
    def cached(self, fingerprint: str) -> CachedRun | None:
        """The latest successful run with this fingerprint (the plan's run cache)."""
        return self.runs.cached(fingerprint)

    def clean_tmp(self, folder: Path) -> None:
        """Remove a staging folder."""
        shutil.rmtree(folder, ignore_errors=True)
