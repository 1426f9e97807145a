"""The store's SQLite index: opened, created once, written in transactions that wait.

Several processes of one workspace write it (two terminals, a parallel launcher's
booking): a write waits for another writer up to a bound, saying so, and each commit
touches the memo's stamp, so that no remembered answer outlives a change of the index.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.core import paths
from pipeline.core.errors import StoreError, VersionTaken
from pipeline.core.paths import STORE_DIR
from pipeline.state import memo
from pipeline.state.objects import Staged
from pipeline.state.statcache import STAT_CACHE_SCHEMA

log = logging.getLogger(__name__)

#: The alias holding the highest version number `gc` removed (no name a user can type).
COLLECTED = "#collected"

#: How long a write waits for another process writing the index: seconds (60 if unset).
BUSY_ENV = "PIPELINE_INDEX_WAIT"


def busy_bound() -> float:
    """How long a writer waits for another one (`PIPELINE_INDEX_WAIT`, 60 s if unset)."""
    text = os.environ.get(BUSY_ENV, "60")
    try:
        bound = float(text)
    except ValueError:
        bound = -1.0
    if not 0 <= bound < float("inf"):
        raise StoreError(f"{BUSY_ENV}={text}: give a number of seconds, such as 60")
    return bound


_INDEX_VERSION = 1
_SCHEMA = (
    STAT_CACHE_SCHEMA
    + """
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
"""
)


class Index:
    """The open index of the store at ``root`` (created there if it is new)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # SQLite waits up to `timeout` for a lock by itself; `_begin` waits longer, and says so.
        self.db = sqlite3.connect(paths.index_file(root), timeout=1, isolation_level=None)
        (found,) = self.db.execute("PRAGMA user_version").fetchone()
        if found != _INDEX_VERSION:
            self._create()

    def _create(self) -> None:
        """Set up a new index (once, even when several processes open it at the same time)."""
        self.db.execute("PRAGMA journal_mode=WAL")
        with self.transaction() as db:
            (found,) = db.execute("PRAGMA user_version").fetchone()
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables and found != _INDEX_VERSION:
                raise StoreError(
                    f"`{self.root}` was made by another version of this tool (index {found}, "
                    f"expected {_INDEX_VERSION}); move it away and rerun to rebuild the store"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={_INDEX_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed when the block ends, rolled back on any error."""
        self._begin()
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        memo.touch(self.root)

    def _begin(self) -> None:
        """Start a write; while another process writes, wait (saying so) up to the bound."""
        bound = busy_bound()
        deadline, said = time.monotonic() + bound, False
        while True:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"the store's index `{STORE_DIR}/index.sqlite` stayed busy for "
                        f"{bound:g} s: another process is writing it (`fuser "
                        f"{STORE_DIR}/index.sqlite` names it); let it finish or stop it, then "
                        f"rerun (wait longer with {BUSY_ENV}=SECONDS)"
                    ) from None
                if not said:
                    log.warning(
                        "waiting for another process writing the store's index (up to %g s)",
                        bound,
                    )
                    said = True


# -- the SQL of versions and aliases, on a connection inside or outside a transaction


def indexed(db: sqlite3.Connection, name: str, number: int) -> bool:
    """Whether version ``number`` of ``name`` is in the index."""
    found = db.execute(
        "SELECT 1 FROM versions WHERE name=? AND version=?", (name, number)
    ).fetchone()
    return found is not None


def insert(db: sqlite3.Connection, staged: Staged, number: int) -> None:
    """Add a stored version under ``number``."""
    db.execute(
        "INSERT INTO versions VALUES (?,?,?,?,?,?,?,?)",
        (
            staged.name,
            number,
            staged.type,
            staged.digest,
            staged.size,
            len(staged.manifest),
            json.dumps(dict(staged.manifest), sort_keys=True),
            time.time(),
        ),
    )


def move_latest(db: sqlite3.Connection, name: str) -> None:
    """Point `latest` at the highest version, as W&B does."""
    db.execute(
        "INSERT OR REPLACE INTO aliases SELECT ?, 'latest', MAX(version) FROM versions "
        "WHERE name=?",
        (name, name),
    )


def free_number(db: sqlite3.Connection, name: str, version: str | None) -> int:
    """The next version number of ``name``, or the one asked for if it is free."""
    if version is None:
        # Numbers `gc` collected are never given again: old runs and locks name them.
        (last,) = db.execute(
            "SELECT COALESCE(MAX(v), -1) FROM (SELECT MAX(version) AS v FROM versions "
            "WHERE name=? UNION ALL SELECT version FROM aliases WHERE name=? AND alias=?)",
            (name, name, COLLECTED),
        ).fetchone()
        return int(last) + 1
    number = int(version.removeprefix("v"))
    taken = db.execute(
        "SELECT digest FROM versions WHERE name=? AND version=?", (name, number)
    ).fetchone()
    if taken is not None:
        raise VersionTaken(
            f"artifact `{name}` {version} in this store holds other content (digest "
            f"{taken[0]}); the store and the lock disagree: pull into a fresh clone, or "
            "rerun the stage that makes it"
        )
    return number


def version_row(db: sqlite3.Connection, name: str, ref: str) -> tuple[Any, ...] | None:
    """A version's row by number (``v3``) or alias (``latest``)."""
    if ref.startswith("v") and ref[1:].isdigit():
        version: int | None = int(ref[1:])
    else:
        alias = db.execute(
            "SELECT version FROM aliases WHERE name=? AND alias=?", (name, ref)
        ).fetchone()
        version = alias[0] if alias else None
    row: tuple[Any, ...] | None = db.execute(
        "SELECT version, type, digest, size, files, manifest FROM versions "
        "WHERE name=? AND version=?",
        (name, version),
    ).fetchone()
    return row
