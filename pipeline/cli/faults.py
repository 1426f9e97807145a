"""Faults as the user meets them: a full disk, a read-only workspace, a damaged index.

Each is said in one line that names the file and the fix; a stage's own exception keeps
its traceback, without the frames of Hydra and of our runner.
"""

from __future__ import annotations

import errno
import sqlite3
import sys
import traceback
from pathlib import Path

from pipeline.core import paths


def _written(filename: object) -> str:
    """A file being written, as the user knows it: a stage's output, not our staging path."""
    if not filename:
        return "the workspace"
    path = Path(str(filename))
    parts = path.parts
    if ".pipeline" in parts and "tmp" in parts[parts.index(".pipeline") :]:
        inside = parts[parts.index("tmp", parts.index(".pipeline")) + 2 :]
        if inside:
            return f"the stage output `{Path(*inside).as_posix()}`"
    return f"`{path}`"


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


_DENIED = (errno.EROFS, errno.EACCES, errno.EPERM)


def cannot_write(exc: BaseException) -> str | None:
    """The disk is full or the workspace is read-only: say where, and what to do."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (*_FULL, *_DENIED):
            where = _written(seen.filename)
            if seen.errno in _FULL:
                return (
                    f"no space left to write {where} ({seen.strerror}); free space on that "
                    "disk, or use a workspace on another one (`--workspace DIR`), and rerun "
                    "(stages that finished are kept)"
                )
            return (
                f"cannot write {where} ({seen.strerror}); run in a workspace you can write "
                "to (`--workspace DIR`)"
            )
        if isinstance(seen, sqlite3.OperationalError) and "disk is full" in str(seen):
            return (
                "no space left for the store's index; free space on that disk and rerun "
                "(stages that finished are kept)"
            )
        if isinstance(seen, sqlite3.OperationalError) and (
            "readonly" in str(seen) or "unable to open" in str(seen)
        ):
            return "cannot open the store's index for writing; use a workspace you can write to"
        seen = seen.__cause__ or seen.__context__
    return None


_PLUMBING = ("/hydra/", "/hydra_zen/", "/omegaconf/", "/pipeline/execution/runner.py")


def damaged_index(exc: BaseException) -> str | None:
    """The store's index is not an SQLite database any more: say so, and how to start anew."""
    text = str(exc)
    if not isinstance(exc, sqlite3.DatabaseError) or not any(
        words in text for words in ("not a database", "malformed", "disk image")
    ):
        return None
    index = paths.index_file(Path(paths.STORE_DIR))
    return (
        f"the store's index `{index}` is damaged ({text}); move it aside (`mv {index} "
        f"{index}.damaged`) and rerun: the stages run again and register their versions anew"
    )


def print_stage_traceback(exc: BaseException) -> None:
    """The stage's own traceback, without the frames of Hydra and of our runner."""
    report = traceback.TracebackException.from_exception(exc)
    for part in (report, report.__cause__, report.__context__):
        if part is not None:
            kept = [f for f in part.stack if not any(p in f.filename for p in _PLUMBING)]
            part.stack = traceback.StackSummary.from_list(kept)
    print("".join(report.format()), end="", file=sys.stderr)
