"""The stat cache: each file's MD5 under its size, mtime and inode, so none is hashed twice."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from pipeline.core.digest import files_md5

STAT_CACHE_SCHEMA = """
CREATE TABLE IF NOT EXISTS stat_cache(
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER, md5 TEXT);
"""


class StatCache:
    """MD5s of the files under a store's root, in its index, keyed by their store path.

    Rows gathered while hashing are written together (:meth:`flush`): it is only a cache,
    and one transaction for ten thousand files costs what one costs for one.
    """

    def __init__(self, db: sqlite3.Connection, root: Path) -> None:
        self._db, self._root = db, root
        self._pending: list[tuple[str, int, int, int, str]] = []

    def hash(self, path: Path) -> str | None:
        """A file's base64 MD5, from the cache when its size, mtime and inode match."""
        return self.hashes(path.parent, [path.name])[path.name]

    def hashes(self, folder: Path, rels: Iterable[str]) -> dict[str, str | None]:
        """Base64 MD5 of files under ``folder`` (``None``: absent), from the cache where valid.

        The cache rows under the folder come in one query; the files the cache cannot
        vouch for are hashed (on every core when they are many) and remembered.
        """
        prefix = f"{folder.relative_to(self._root).as_posix()}/"
        rows = {
            path: (size, mtime, inode, md5)
            for path, size, mtime, inode, md5 in self._db.execute(
                "SELECT path, size, mtime_ns, inode, md5 FROM stat_cache "
                "WHERE path >= ? AND path < ?",
                (prefix, prefix[:-1] + chr(ord("/") + 1)),
            )
        }
        found: dict[str, str | None] = {}
        todo: list[tuple[str, os.stat_result]] = []
        base = str(folder)
        for rel in rels:
            try:
                st = os.stat(os.path.join(base, rel))
            except FileNotFoundError:
                found[rel] = None
                continue
            row = rows.get(prefix + rel)
            if row is not None and row[:3] == (st.st_size, st.st_mtime_ns, st.st_ino):
                found[rel] = str(row[3])
            else:
                todo.append((rel, st))
        digests = files_md5([os.path.join(base, rel) for rel, _ in todo])
        for (rel, st), md5 in zip(todo, digests, strict=True):
            found[rel] = md5
            self.remember(os.path.join(base, rel), md5, st)
        self.flush()
        return found

    def remember(self, path: str | Path, md5: str, st: os.stat_result | None = None) -> None:
        """Note a file's MD5 under its stat now (``st`` if given); written at the next flush."""
        st = st or os.stat(path)
        self._pending.append((self._key(path), st.st_size, st.st_mtime_ns, st.st_ino, md5))

    def vouch(self, rows: Iterable[tuple[str, int, int, int, str]]) -> None:
        """Take another process's rows (path under the root, size, mtime_ns, inode, MD5).

        A row is checked against its file's stat when it is read, as any is; one whose file
        has another size, mtime or inode already is left out.
        """
        for rel, size, mtime, inode, md5 in rows:
            try:
                st = os.stat(self._root / rel)
            except FileNotFoundError:
                continue
            if (st.st_size, st.st_mtime_ns, st.st_ino) == (size, mtime, inode):
                self._pending.append((rel, size, mtime, inode, md5))

    def forget(self, paths: Iterable[Path]) -> None:
        """Drop the rows of these files: the next check hashes them again (they are damaged)."""
        self.flush()
        keys = [(self._key(path),) for path in paths]
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany("DELETE FROM stat_cache WHERE path=?", keys)
        self._db.execute("COMMIT")

    def _key(self, path: str | Path) -> str:
        """A file's row: its path under the store's root."""
        return str(path)[len(str(self._root)) + 1 :]

    def flush(self) -> None:
        """Write the rows gathered so far, in one transaction (or the one under way)."""
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        sql = "INSERT OR REPLACE INTO stat_cache VALUES (?,?,?,?,?)"
        if self._db.in_transaction:
            self._db.executemany(sql, rows)
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # another process is writing: a cache can wait
            return
        self._db.executemany(sql, rows)
        self._db.execute("COMMIT")
