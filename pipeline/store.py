"""The artifact store in `.pipeline/`: objects, version folders, SQLite index, stat cache."""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.digest import file_md5, manifest_digest
from pipeline.errors import StoreError
from pipeline.lock import InputPin, OutputPin
from pipeline.plan import CachedRun
from pipeline.runs import RunIndex

STORE_DIR = ".pipeline"
_INDEX_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions(
    name TEXT, version INTEGER, type TEXT, digest TEXT, size INTEGER, files INTEGER,
    manifest TEXT, created REAL, PRIMARY KEY (name, version), UNIQUE (name, digest));
CREATE TABLE IF NOT EXISTS aliases(
    name TEXT, alias TEXT, version INTEGER, PRIMARY KEY (name, alias));
CREATE TABLE IF NOT EXISTS runs(
    id INTEGER PRIMARY KEY, stage TEXT, fingerprint TEXT, status TEXT, started REAL,
    ended REAL, inputs TEXT, outputs TEXT, metrics TEXT, tracking TEXT, config TEXT,
    code TEXT, environment TEXT);
CREATE INDEX IF NOT EXISTS runs_by_fingerprint ON runs (fingerprint, status);
CREATE TABLE IF NOT EXISTS stat_cache(
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER, md5 TEXT);
"""


def open_existing(workspace: Path) -> Store:
    """The store of a workspace where something already ran."""
    if not (workspace / STORE_DIR).is_dir():
        raise StoreError(
            f"`{workspace}` has no `{STORE_DIR}` store: nothing ran there yet "
            "(run `python -m pipeline run`, or pass --workspace)"
        )
    return Store(workspace)


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _object_name(md5_b64: str) -> str:
    hexdigest = base64.b64decode(md5_b64).hex()
    return f"{hexdigest[:2]}/{hexdigest[2:]}"


class Store:
    """Artifact versions by content, with the index of runs that made and used them."""

    def __init__(self, workspace: Path) -> None:
        self.root = workspace / STORE_DIR
        for sub in ("objects", "artifacts", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.root / "index.sqlite", timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        (found,) = self._db.execute("PRAGMA user_version").fetchone()
        tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables and found != _INDEX_VERSION:
            self._db.close()
            raise StoreError(
                f"`{self.root}` was made by another version of this tool (index {found}, "
                f"expected {_INDEX_VERSION}); move it away and rerun to rebuild the store"
            )
        self._db.executescript(_SCHEMA + f"PRAGMA user_version={_INDEX_VERSION};")
        self.runs = RunIndex(self._db, self._transaction)

    def close(self) -> None:
        """Close the index."""
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- artifacts -------------------------------------------------------------
    def path(self, name: str, version: str) -> Path:
        """The read-only folder of an artifact version."""
        return self.root / "artifacts" / name / version

    def staging(self) -> Path:
        """A new empty folder on the store's file system for a stage to write into."""
        folder = self.root / "tmp" / uuid.uuid4().hex
        folder.mkdir()
        return folder

    def commit(self, folder: Path, name: str, type_: str) -> OutputPin:
        """Store a folder's files as a version of ``name``; identical content reuses its version."""
        manifest = {rel: file_md5(folder / rel) for rel in _files(folder)}
        if not manifest:
            raise StoreError(f"artifact `{name}` is empty: its stage wrote no file into {folder}")
        for rel, md5 in manifest.items():
            self._put_object(folder / rel, md5)
        digest = manifest_digest(manifest)
        size = sum((folder / rel).stat().st_size for rel in manifest)
        with self._transaction() as db:
            row = db.execute(
                "SELECT version FROM versions WHERE name=? AND digest=?", (name, digest)
            ).fetchone()
            if row is None:
                (last,) = db.execute(
                    "SELECT COALESCE(MAX(version), -1) FROM versions WHERE name=?", (name,)
                ).fetchone()
                version = last + 1
                db.execute(
                    "INSERT INTO versions VALUES (?,?,?,?,?,?,?,?)",
                    (
                        name,
                        version,
                        type_,
                        digest,
                        size,
                        len(manifest),
                        json.dumps(manifest, sort_keys=True),
                        time.time(),
                    ),
                )
            else:
                version = row[0]
            self._materialise(name, f"v{version}", manifest)
            db.execute("INSERT OR REPLACE INTO aliases VALUES (?, 'latest', ?)", (name, version))
        return OutputPin(name, type_, f"v{version}", digest, size, len(manifest))

    def _put_object(self, src: Path, md5: str) -> None:
        target = self.root / "objects" / _object_name(md5)
        if target.exists():
            return
        target.parent.mkdir(exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
        shutil.copyfile(src, tmp)
        tmp.chmod(0o444)
        os.replace(tmp, target)

    def _materialise(self, name: str, version: str, manifest: Mapping[str, str]) -> None:
        """Build the version folder beside its final place, then rename it in one step."""
        final = self.path(name, version)
        if final.exists():
            return
        tmp = final.with_name(f".{version}.{uuid.uuid4().hex}")
        for rel, md5 in manifest.items():
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            obj = self.root / "objects" / _object_name(md5)
            try:
                os.link(obj, dest)
            except OSError:  # no hard links on this file system: copy instead
                shutil.copyfile(obj, dest)
        tmp.rename(final)

    def _version_row(self, name: str, ref: str) -> tuple[Any, ...] | None:
        if ref.startswith("v") and ref[1:].isdigit():
            version: int | None = int(ref[1:])
        else:
            alias = self._db.execute(
                "SELECT version FROM aliases WHERE name=? AND alias=?", (name, ref)
            ).fetchone()
            version = alias[0] if alias else None
        row: tuple[Any, ...] | None = self._db.execute(
            "SELECT version, type, digest, size, files, manifest FROM versions "
            "WHERE name=? AND version=?",
            (name, version),
        ).fetchone()
        return row

    def resolve(self, name: str, ref: str) -> InputPin | None:
        """An artifact version by version (``v3``) or alias (``latest``)."""
        row = self._version_row(name, ref)
        return None if row is None else InputPin(name, f"v{row[0]}", row[2])

    def intact(self, pin: OutputPin) -> bool:
        """Whether the version folder holds exactly the files its digest promises."""
        row = self._version_row(pin.name, pin.version)
        folder = self.path(pin.name, pin.version)
        if row is None or row[2] != pin.digest or not folder.is_dir():
            return False
        manifest: dict[str, str] = json.loads(row[5])
        return all(self.hash(folder / rel) == md5 for rel, md5 in manifest.items())

    def hash(self, path: Path) -> str | None:
        """A file's base64 MD5, from the stat cache when its size, mtime and inode match."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        key = str(path.relative_to(self.root))
        row = self._db.execute(
            "SELECT md5 FROM stat_cache WHERE path=? AND size=? AND mtime_ns=? AND inode=?",
            (key, st.st_size, st.st_mtime_ns, st.st_ino),
        ).fetchone()
        if row:
            return str(row[0])
        md5 = file_md5(path)
        self._db.execute(
            "INSERT OR REPLACE INTO stat_cache VALUES (?,?,?,?,?)",
            (key, st.st_size, st.st_mtime_ns, st.st_ino, md5),
        )
        return md5

    def verify(self, pin: OutputPin) -> str | None:
        """What is wrong with a version, rehashing every file (no cache): ``None`` if nothing."""
        row = self._version_row(pin.name, pin.version)
        folder = self.path(pin.name, pin.version)
        if row is None:
            return "not in the store's index"
        if row[2] != pin.digest:
            return f"the store's {pin.version} has digest {row[2]}, not {pin.digest}"
        manifest: dict[str, str] = json.loads(row[5])
        missing = [rel for rel in manifest if not (folder / rel).is_file()]
        if missing:
            return f"missing {', '.join(missing)}"
        changed = [rel for rel, md5 in manifest.items() if file_md5(folder / rel) != md5]
        return (
            f"corrupt {', '.join(changed)} (content differs from its digest)" if changed else None
        )

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
