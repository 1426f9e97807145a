"""What every benchmark shares: scratch workspaces, DVC's venv, the environment, timing."""

from __future__ import annotations

import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SCRATCH = Path(os.environ.get("BENCH_SCRATCH", "/tmp/bench-scratch"))
VENV = REPO / "bench" / ".dvc-venv"
DVC_VERSION = "3.67.1"
PYTHON = sys.executable
# The code each workspace holds, as a project repository would (`bench` for its stages).
_CODE = ("pipeline", "stages", "bench")
_SKIP = shutil.ignore_patterns(".dvc-venv", "profiles", "*.md", "results*.json", "test_*")


@dataclass
class Result:
    """One benchmark's raw timings (seconds) and its verdict against the target ratio."""

    name: str
    title: str
    target: str
    ours: list[float] = field(default_factory=list)
    dvc: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    limit: float | None = None  # the target: a ratio, or absolute seconds when there is no DVC

    @property
    def ratio(self) -> float | None:
        """Median ours / median DVC."""
        if not self.ours or not self.dvc:
            return None
        return statistics.median(self.ours) / statistics.median(self.dvc)

    @property
    def met(self) -> bool | None:
        """Whether the target is met (``None``: nothing to compare)."""
        if self.limit is None:
            return None
        if self.dvc:
            ratio = self.ratio
            return None if ratio is None else ratio <= self.limit
        seconds = {k: statistics.median(v) for k, v in self.extra.get("seconds", {}).items() if v}
        limits = self.extra.get("limits", {})  # per command: the first word of each label
        if not seconds:
            return None
        return all(v <= limits.get(k.split()[0], self.limit) for k, v in seconds.items())


@dataclass(frozen=True)
class Settings:
    """How a session runs: repeats, sizes, whether DVC takes part, where profiles go."""

    repeat: int = 5
    heavy_repeat: int = 3
    smoke: bool = False
    dvc: bool = True
    profiles: Path | None = None
    scm: bool = True  # DVC in a git repository (False: `dvc init --no-scm`)
    timeout: float = 900.0
    log: Callable[[str], None] = field(default=lambda text: print(text, file=sys.stderr))


def environment(stages: str | None = None) -> dict[str, str]:
    """The same environment for both tools: a temporary HOME, W&B off, DVC's analytics off.

    The system Python leads PATH, so DVC's stage commands (`python -m ...`) run with the
    interpreter that has torch; DVC itself runs from its own venv by absolute path.
    """
    home = SCRATCH / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop("PIPELINE_STAGES", None)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and str(VENV) not in p]
    env.update(
        HOME=str(home),
        PATH=os.pathsep.join([str(Path(PYTHON).parent), *path]),
        WANDB_MODE="disabled",
        WANDB_DIR=str(home / "wandb"),
        WANDB_DATA_DIR=str(home / "wandb-data"),
        WANDB_CACHE_DIR=str(home / "wandb-cache"),
        WANDB_CONFIG_DIR=str(home / "wandb-config"),
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(home / "dvc-site-cache"),
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.com",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.com",
        MPLBACKEND="Agg",
    )
    if stages:
        env["PIPELINE_STAGES"] = stages
    return env


def workspace(tag: str) -> Path:
    """A new folder under the scratch space holding a copy of the project's code.

    Copies keep their mtimes (so the bytecode caches stay valid) and make each workspace
    a project repository: code paths in the lock and DVC's deps read `stages/train.py`.
    """
    (SCRATCH / "runs").mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=SCRATCH / "runs"))
    for name in _CODE:
        shutil.copytree(REPO / name, folder / name, ignore=_SKIP)
    return folder


def remove(folder: Path) -> None:
    """Delete a workspace (DVC's cache and our store hold read-only files)."""
    subprocess.run(["chmod", "-R", "u+w", str(folder)], check=False)
    shutil.rmtree(folder, ignore_errors=True)


def run(args: Sequence[str], cwd: Path, env: dict[str, str], timeout: float = 900.0) -> str:
    """Run a command; its stdout, or an error carrying the tail of its output."""
    done = subprocess.run(
        list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-3000:]
        raise RuntimeError(f"`{' '.join(args)}` in {cwd} exited {done.returncode}:\n{tail}")
    return done.stdout + done.stderr


def timed(args: Sequence[str], cwd: Path, env: dict[str, str], timeout: float = 900.0) -> float:
    """Wall seconds of one command, start of the interpreter included."""
    start = time.perf_counter()
    run(args, cwd, env, timeout)
    return time.perf_counter() - start


def ours(*args: str) -> list[str]:
    """Our CLI."""
    return [PYTHON, "-m", "pipeline", *args]


def dvc(*args: str) -> list[str]:
    """DVC from its venv."""
    return [str(VENV / "bin" / "dvc"), *args]


def dvc_available() -> bool:
    """Whether DVC's venv exists already."""
    return (VENV / "bin" / "dvc").exists()


def ensure_dvc(log: Callable[[str], None]) -> str:
    """Create DVC's venv on first use (`pip install dvc==3.67.1`); DVC's version."""
    if not dvc_available():
        log(f"creating {VENV} with dvc=={DVC_VERSION} (once)")
        subprocess.run([PYTHON, "-m", "venv", str(VENV)], check=True)
        pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, f"dvc=={DVC_VERSION}"], check=True)
    out = subprocess.run(dvc("--version"), capture_output=True, text=True, check=True)
    return out.stdout.strip()


def dvc_init(folder: Path, env: dict[str, str], scm: bool = True) -> None:
    """`git init` and `dvc init` with the code committed: DVC as most projects use it."""
    if not scm:
        run(dvc("init", "-q", "--no-scm"), folder, env)
        return
    run(["git", "init", "-q"], folder, env)
    run(dvc("init", "-q"), folder, env)
    run(["git", "add", "-A"], folder, env)
    run(["git", "commit", "-q", "-m", "init"], folder, env)


def alternate(
    rounds: int, first: Callable[[], float], second: Callable[[], float] | None
) -> tuple[list[float], list[float]]:
    """Call both ``rounds`` times, alternating which goes first; their timings."""
    a: list[float] = []
    b: list[float] = []
    for i in range(rounds):
        order = [(first, a), (second, b)] if i % 2 == 0 else [(second, b), (first, a)]
        for fn, into in order:
            if fn is not None:
                into.append(fn())
    return a, b


def profile(args: Sequence[str], cwd: Path, env: dict[str, str], target: Path, title: str) -> None:
    """Run ``python -m ARGS`` under cProfile; keep the top 25 cumulative lines in ``target``."""
    raw = cwd / ".bench.prof"
    run([PYTHON, "-m", "cProfile", "-o", str(raw), "-m", *args], cwd, env)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8") as fh:
        fh.write(f"# {title}\n# python -m cProfile -m {' '.join(args)}  (in {cwd.name})\n")
        pstats.Stats(str(raw), stream=fh).sort_stats("cumulative").print_stats(25)
    raw.unlink()
