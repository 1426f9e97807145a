"""Run the CLI and SIGKILL it at the N-th call of a function, before or after the call.

``python crashpoint.py MODULE:ATTR N before|after ARGS...`` runs ``python -m pipeline ARGS``
in this process with ``MODULE.ATTR`` wrapped, so a crash lands at an exact point of the
real code (inside an artifact commit, between writing and renaming the lock, ...) rather
than at a time that depends on the machine's speed.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import Any


def install(target: str, nth: int, when: str) -> None:
    """Wrap ``target`` so that its ``nth`` call kills this process with SIGKILL."""
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
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if calls == nth and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, attr, wrapper)


if __name__ == "__main__":
    target, nth, when, *argv = sys.argv[1:]
    install(target, int(nth), when)
    from pipeline.cli import main

    sys.exit(main(argv))
