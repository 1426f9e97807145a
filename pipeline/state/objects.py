"""The store's files: content objects and version folders, without the index.

This is what a stage's job writes, wherever it runs (a SLURM node on a shared file
system): every file appears under its final name in one step (a hard link, or a copy
renamed into place) and a version folder is built aside and renamed in whole, which NFS
does atomically too. Nothing here opens SQLite: the submitting process records what a
job made in the index (:mod:`pipeline.state.store`), since SQLite's locking is not safe over
NFS.
"""

from __future__ import annotations

import base64
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.digest import files_md5, manifest_digest
from pipeline.core.errors import StoreError
from pipeline.core.lock import OutputPin
from pipeline.core.paths import HOST

#: The store's folder of in-progress runs' checkpoints, one folder per fingerprint.
CHECKPOINTS = "checkpoints"
#: A file's hash check: folder, files under it -> base64 MD5 of each (``None``: absent).
Hashes = Callable[[Path, Iterable[str]], Mapping[str, "str | None"]]
#: A file the store hashed: path under the store's root, size, mtime_ns, inode, MD5.
StatRow = tuple[str, int, int, int, str]


def object_name(md5_b64: str) -> str:
    """An object's path under `objects/`, from a file's base64 MD5."""
    hexdigest = base64.b64decode(md5_b64).hex()
    return f"{hexdigest[:2]}/{hexdigest[2:]}"


def walk(folder: Path) -> tuple[set[str], list[str]]:
    """The plain files under ``folder`` (relative), and whatever else is there but folders."""
    files: set[str] = set()
    other: list[str] = []
    skip = len(str(folder)) + 1
    pending = [str(folder)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    files.add(entry.path[skip:])
                else:
                    other.append(entry.path[skip:])
    return files, sorted(other)


def remove(path: Path) -> None:
    """Remove a file or a folder tree, whichever it is; nothing if it is gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def rehash(folder: Path, rels: Iterable[str]) -> dict[str, str | None]:
    """Base64 MD5 of files under ``folder``, each read again (``None``: absent)."""
    rels = list(rels)
    present = [rel for rel in rels if os.path.isfile(os.path.join(folder, rel))]
    found: dict[str, str | None] = dict.fromkeys(rels)
    found.update(zip(present, files_md5([os.path.join(folder, r) for r in present]), strict=True))
    return found


@dataclass(frozen=True)
class Staged:
    """A stage's output folder, hashed: what a version of it holds."""

    name: str
    type: str
    manifest: Mapping[str, str]  # file -> base64 MD5
    digest: str
    size: int

    def pin(self, version: str) -> OutputPin:
        return OutputPin(self.name, self.type, version, self.digest, self.size, len(self.manifest))


@dataclass
class Files:
    """Objects and version folders under a store's root.

    ``hashes`` checks files already there (the index's stat cache in the submitting
    process; a plain rehash in a job); every file hashed or written is ``remembered``.
    """

    root: Path
    hashes: Hashes = rehash
    remember: Callable[[str, str], None] | None = None
    #: Without ``remember``: the files written, for the submitter's stat cache.
    written: list[StatRow] = field(default_factory=list)

    def temp(self) -> Path:
        """A fresh path in `tmp/`, named after this host and process so leftovers are found."""
        return self.root / "tmp" / f"{HOST}-{os.getpid()}-{uuid.uuid4().hex}"

    def folder(self, name: str, version: str) -> Path:
        """An artifact version's folder (names are checked by the store)."""
        return self.root / "artifacts" / name / version

    def checkpoints(self, fingerprint: str) -> Path:
        """The scratch folder of a run's checkpoints, by its fingerprint (made on first use).

        Outside `tmp/`, which a store open clears: a rerun after a kill finds it.
        """
        return self.root / CHECKPOINTS / fingerprint

    def hash_output(self, folder: Path, name: str, type_: str) -> Staged:
        """Hash a stage's output folder; links, special files and an empty folder are refused."""
        files, other = walk(folder)
        if other:
            raise StoreError(
                f"artifact `{name}`: `{other[0]}` is a link or special file; a stage must "
                "write plain files into its output folder"
            )
        rels = sorted(files)
        sources = [os.path.join(folder, rel) for rel in rels]
        manifest = dict(zip(rels, files_md5(sources), strict=True))
        if not manifest:
            raise StoreError(f"artifact `{name}` is empty: its stage wrote no file into {folder}")
        size = sum(os.stat(source).st_size for source in sources)
        return Staged(name, type_, manifest, manifest_digest(manifest), size)

    def put_objects(self, folder: Path, staged: Staged, made: set[str]) -> None:
        """Store each file of a hashed output folder as an object (once per content)."""
        for rel, md5 in staged.manifest.items():
            self._put_object(os.path.join(folder, rel), md5, made)

    def _put_object(self, src: str, md5: str, made: set[str]) -> None:
        target = os.path.join(self.root, "objects", object_name(md5))
        if os.path.exists(target):
            # Present and undamaged: nothing to do.
            head, tail = os.path.split(target)
            if self.hashes(Path(head), [tail])[tail] == md5:
                return
            self._replace_object(src, target, md5)
            return
        _makedirs(os.path.dirname(target), made)
        try:  # the staging folder is on the store's file system: a link appears whole
            os.link(src, target)
        except FileExistsError:  # another process stored the same content just now
            return
        except OSError:  # no hard links here
            self._replace_object(src, target, md5)
            return
        os.chmod(target, 0o444)
        self._note(target, md5)

    def _replace_object(self, src: str, target: str, md5: str) -> None:
        """Copy to a temporary name, then rename over ``target`` in one step."""
        tmp = str(self.temp())
        try:
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
            self._note(target, md5)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)

    def materialise(
        self, name: str, version: str, manifest: Mapping[str, str], fresh: bool, made: set[str]
    ) -> None:
        """Build the version folder aside from its objects, then rename it into place.

        An existing folder is kept when it is not ``fresh`` (the index had the version)
        and holds exactly its files; otherwise it is a crash's leftover or damaged, and
        replaced.
        """
        final = self.folder(name, version)
        if final.exists() and not fresh and self.damage(final, manifest) is None:
            return
        tmp = self.temp()
        objects = os.path.join(self.root, "objects")
        try:
            for rel, md5 in manifest.items():
                dest = os.path.join(tmp, rel)
                _makedirs(os.path.dirname(dest), made)
                obj = os.path.join(objects, object_name(md5))
                try:
                    os.link(obj, dest)
                except OSError:  # no hard links on this file system: copy instead
                    shutil.copyfile(obj, dest)
                    os.chmod(dest, 0o444)  # read-only, as a linked object is
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists() or final.is_symlink():  # damaged, or left by a crash
                old = self.temp()
                final.rename(old)
                remove(old)
            tmp.rename(final)
        finally:
            remove(tmp)
        for rel, md5 in manifest.items():  # hashed already: the next check needs no read
            self._note(os.path.join(final, rel), md5)

    def damage(
        self, folder: Path, manifest: Mapping[str, str], rehash_all: bool = False
    ) -> str | None:
        """What is wrong with a version folder, ``None`` if it holds exactly its files."""
        inside = self.root.resolve() / "artifacts"
        if not folder.is_dir() or not folder.resolve().is_relative_to(inside):
            return "its folder is missing, or a link out of the store"
        found, links = walk(folder)
        if links:
            return f"{', '.join(links)} are links or special files, not plain files"
        if missing := sorted(set(manifest) - found):
            return f"missing {', '.join(missing)}"
        if extra := sorted(found - set(manifest)):
            return f"unexpected {', '.join(extra)}"
        hashed = (rehash if rehash_all else self.hashes)(folder, manifest)
        changed = [rel for rel, md5 in manifest.items() if hashed[rel] != md5]
        return (
            f"corrupt {', '.join(changed)} (content differs from its digest)" if changed else None
        )

    def _note(self, path: str, md5: str) -> None:
        if self.remember is not None:
            self.remember(path, md5)
            return
        st = os.stat(path)
        rel = path[len(str(self.root)) + 1 :]
        self.written.append((rel, st.st_size, st.st_mtime_ns, st.st_ino, md5))


def _makedirs(path: str, made: set[str]) -> None:
    """``os.makedirs``, once per folder among the ``made`` ones (a commit makes thousands)."""
    if path not in made:
        os.makedirs(path, exist_ok=True)
        made.add(path)
