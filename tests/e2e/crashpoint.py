"""Run the CLI and SIGKILL it at an exact point of the real code, not at a time that depends
on the machine's speed.

``python crashpoint.py [OPTIONS] MODULE:ATTR N before|after ARGS...`` runs
``python -m pipeline ARGS`` in this process with ``MODULE.ATTR`` wrapped, so that its N-th
call is the point (inside an artifact commit, between writing and renaming the lock, ...).

``python crashpoint.py [OPTIONS] file:GLOB N BYTES ARGS...`` makes the point the instant
BYTES bytes (characters, for a text file) are in the N-th file opened for writing whose name
matches GLOB: the process dies *inside* the write of a large lock or a copied object.

At the point, in this order, before the kill:

``--run CMD``
    runs the shell command CMD to completion: another writer acting at that instant.
``--start CMD``
    starts CMD and gives it ``--wait`` seconds (5 by default) before going on; says on stderr
    whether it was still running then, and at exit waits for it (its failure fails this run).
``--look FILE``
    a second process records what a reader sees in the workspace (the current folder) as
    JSON in FILE: the lock's text (``null`` if there is none) and, for every folder under
    ``.pipeline/artifacts/NAME/``, the MD5 of each file in it.

``--survive`` carries on instead of dying; ``--no-links`` makes ``os.link`` fail for the
whole run, as on a file system without hard links (the store then copies).
"""

from __future__ import annotations

import argparse
import builtins
import errno
import fnmatch
import hashlib
import importlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

_started: list[tuple[str, subprocess.Popen[bytes]]] = []


def install(target: str, nth: int, when: str, at_point: Callable[[], None]) -> None:
    """Make the ``nth`` call of ``MODULE:ATTR`` (or write into ``file:GLOB``) the point."""
    if target.startswith("file:"):
        _install_file(target.removeprefix("file:"), nth, int(when), at_point)
        return
    module_name, _, path = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *parents, attr = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    original = getattr(owner, attr)
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == nth and when == "before":
            at_point()
        result = original(*args, **kwargs)
        if calls == nth and when == "after":
            at_point()
        return result

    setattr(owner, attr, wrapper)


class _Cut:
    """A file opened for writing that reaches the point once ``limit`` more units are in it."""

    def __init__(self, file: Any, limit: int, at_point: Callable[[], None]) -> None:
        self._file, self._left, self._at_point = file, limit, at_point

    def write(self, data: Any) -> int:
        if len(data) < self._left:
            self._left -= len(data)
            return int(self._file.write(data))
        head, tail = data[: self._left], data[self._left :]
        self._file.write(head)
        self._file.flush()  # what is written so far is what any other process sees
        self._left = sys.maxsize
        self._at_point()
        self._file.write(tail)  # with --survive only
        return len(data)

    def __enter__(self) -> _Cut:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def _install_file(glob: str, nth: int, limit: int, at_point: Callable[[], None]) -> None:
    """Wrap the N-th file opened for writing under a name matching ``glob``."""
    opened = 0

    def cut(file: Any, name: Any, mode: str) -> Any:
        nonlocal opened
        if not any(c in mode for c in "wax+"):
            return file
        if isinstance(name, int):
            name = os.readlink(f"/proc/self/fd/{name}")
        if not fnmatch.fnmatch(os.path.basename(os.fsdecode(name)), glob):
            return file
        opened += 1
        return _Cut(file, limit, at_point) if opened == nth else file

    real_open, real_fdopen = io.open, os.fdopen

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        return cut(real_open(file, mode, *args, **kwargs), file, mode)

    def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        return cut(real_fdopen(fd, mode, *args, **kwargs), fd, mode)

    # `open` in any module, `Path.open`/`write_text` (io.open) and `os.fdopen`.
    builtins.open = io.open = open_
    os.fdopen = fdopen
    shutil._USE_CP_SENDFILE = False  # type: ignore[attr-defined]  # copies go through write()


def _no_link(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.EPERM, "no hard links on this file system (crashpoint --no-links)")


def look(workspace: Path, out: Path) -> None:
    """Record what a reader sees in ``workspace`` right now (see the module docstring)."""
    from pipeline.core.paths import LOCK_NAME, STORE_DIR

    lock = workspace / LOCK_NAME
    text = lock.read_bytes().decode("utf-8", "replace") if lock.is_file() else None
    folders: dict[str, dict[str, str]] = {}
    artifacts = workspace / STORE_DIR / "artifacts"
    for folder in sorted(artifacts.glob("*/*")):
        folders[folder.relative_to(artifacts).as_posix()] = {
            path.relative_to(folder).as_posix(): hashlib.md5(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        }
    out.write_text(json.dumps({"lock": text, "versions": folders}), encoding="utf-8")


def _point(options: argparse.Namespace) -> None:
    if options.run:
        subprocess.run(options.run, shell=True, check=True)
    if options.start:
        other = subprocess.Popen(options.start, shell=True)
        _started.append((options.start, other))
        try:
            other.wait(options.wait)
            print(f"crashpoint: `{options.start}` ended within {options.wait} s", file=sys.stderr)
        except subprocess.TimeoutExpired:
            print(
                f"crashpoint: `{options.start}` was still running after {options.wait} s",
                file=sys.stderr,
            )
    if options.look:
        subprocess.run([sys.executable, __file__, "--look-now", options.look], check=True)
    if not options.survive:
        os.kill(os.getpid(), signal.SIGKILL)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--run", metavar="CMD")
    parser.add_argument("--start", metavar="CMD")
    parser.add_argument("--wait", type=float, default=5.0)
    parser.add_argument("--look", metavar="FILE")
    parser.add_argument("--survive", action="store_true")
    parser.add_argument("--no-links", action="store_true")
    parser.add_argument("target")
    parser.add_argument("nth", type=int)
    parser.add_argument("when")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    return parser


def main() -> int:
    """Install the point and run the CLI; the exit status of the CLI (or of a started CMD)."""
    if sys.argv[1:2] == ["--look-now"]:
        look(Path.cwd(), Path(sys.argv[2]))
        return 0
    options = _parser().parse_args()
    if options.no_links:
        os.link = _no_link
    install(options.target, options.nth, options.when, lambda: _point(options))
    from pipeline.cli.main import main as cli

    code = cli(options.argv)
    for command, other in _started:
        if other.wait() != 0:
            print(f"crashpoint: `{command}` exited {other.returncode}", file=sys.stderr)
            code = code or 1
    return code


if __name__ == "__main__":
    sys.exit(main())
