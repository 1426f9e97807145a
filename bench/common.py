"""Shared by the benchmarks: time one `python -m pipeline run` in a fresh workspace."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(args: list[str], home: Path) -> float:
    """Wall seconds of `python -m pipeline run ARGS` in a new workspace under ``home``."""
    workspace = Path(tempfile.mkdtemp(dir=home))
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DATA_DIR": str(home / "wandb-data")}
    env.pop("WANDB_DIR", None)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pipeline", "--workspace", str(workspace), "run", *args],
        check=True,
        env=env,
        capture_output=True,
    )
    return time.perf_counter() - start
