"""What a wave's job hands back to the process that launched it: files, never the index.

A job (in the launcher's process, a joblib worker, or a SLURM job on another host) gets a
folder in the store's `tmp/` from the submitter. It writes `started.json` (where it runs)
when it starts and `result.json` (its outputs, or its one-line error) when it ends, each
renamed into place whole; its outputs are version folders in the store under numbers the
submitter gave it. The submitter reads the records and alone writes the SQLite index,
whose locking is unsafe on the network file systems clusters share.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.paths import HOST

STARTED = "started.json"
RESULT = "result.json"
#: Where the job's stage writes its output folders, inside the job's hand-back folder.
OUT = "out"


@dataclass(frozen=True)
class Versions:
    """How a job numbers its version of one artifact, decided by the submitter.

    Content already stored keeps its version (``known``: digest -> version); new content
    gets ``number``, which the submitter holds for this job while the wave runs.
    """

    known: Mapping[str, str]
    number: int

    def choose(self, digest: str) -> tuple[str, bool]:
        """The version for content with this digest, and whether it is new."""
        found = self.known.get(digest)
        return (found, False) if found else (f"v{self.number}", True)


def write(folder: Path, name: str, doc: Mapping[str, Any]) -> None:
    """Write a record whole: a temporary name in the same folder, renamed over ``name``."""
    tmp = folder / f".{name}.{uuid.uuid4().hex}"
    tmp.write_text(json.dumps(doc, sort_keys=True))
    os.replace(tmp, folder / name)


def read(folder: Path, name: str) -> dict[str, Any] | None:
    """A record, or ``None`` when the job did not write it."""
    try:
        found = json.loads((folder / name).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def here() -> dict[str, Any]:
    """Where this job runs: host and process, and its submitit job id and log, if any."""
    found: dict[str, Any] = {"host": HOST, "pid": os.getpid()}
    executor = os.environ.get("SUBMITIT_EXECUTOR")
    if executor:
        import submitit

        env = submitit.JobEnvironment()
        found.update(executor=executor, job_id=env.job_id, log=str(env.paths.stderr))
    return found


def where(started: Mapping[str, Any] | None) -> str:
    """`` (SLURM job 12_1, log PATH)`` for a submitit job; nothing for a local one."""
    if not started or "job_id" not in started:
        return ""
    kind = "SLURM job" if started.get("executor") == "slurm" else "job"
    return f" ({kind} {started['job_id']}, log {started['log']})"


def running(started: Mapping[str, Any] | None) -> bool:
    """Whether the job that wrote ``started`` still runs (or waits in SLURM's queue)."""
    if not started:
        return False
    if started.get("executor") == "slurm":
        array = str(started["job_id"]).split("_", 1)[0]  # the whole array: some may be queued
        try:
            listed = subprocess.run(
                ["squeue", "-h", "-o", "%i", "-j", array],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return listed.returncode == 0 and bool(listed.stdout.strip())
    if started.get("host") != HOST or started.get("pid") == os.getpid():
        return False
    return alive(int(started["pid"]))


def alive(pid: int) -> bool:
    """Whether a process of this host runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_alive(name: str) -> bool:
    """Whether the process that named a folder ``HOST-PID-XXXX`` runs (another host's: yes)."""
    host, pid, _ = [*name.rsplit("-", 2), "", ""][:3]
    return host != HOST or not pid.isdigit() or alive(int(pid))


def slurm_state(started: Mapping[str, Any] | None, wait: float = 10.0) -> str:
    """SLURM's word for how a job ended (``CANCELLED by 0``, ``TIMEOUT``), if it has one.

    The accounting hears of a job's end a moment after the job ends: asked again for up
    to ``wait`` seconds; nothing if it still says the job runs.
    """
    if not started or started.get("executor") != "slurm":
        return ""
    deadline = time.monotonic() + wait
    while True:
        try:
            listed = subprocess.run(
                ["sacct", "-n", "-X", "-P", "-o", "State", "-j", str(started["job_id"])],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        lines = listed.stdout.split("\n") if listed.returncode == 0 else []
        state = lines[0].strip() if lines else ""
        if state and state.split()[0] not in _UNDER_WAY:
            return state
        if time.monotonic() >= deadline:
            return ""
        time.sleep(0.5)


_UNDER_WAY = {"PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "SUSPENDED"}
