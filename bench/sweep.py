"""Benchmark 5: planning a sweep of 2,000 members and loading its lock (no DVC equivalent)."""

from __future__ import annotations

import json
import shutil

from bench import harness as h
from bench.harness import Result, Settings
from bench.inproc import sweep_overrides


def sweep(settings: Settings) -> Result:
    """CLI wall time of `run --dry-run -m` (40 lr x 50 seeds), the same in-process, lock read."""
    lrs, seeds = (2, 2) if settings.smoke else (40, 50)
    result = Result(
        "sweep_2000",
        f"5. plan a sweep of {lrs * seeds:,} members; load its lock",
        "< 1 s each",
        limit=1.0,
    )
    env = h.environment()
    folder = h.workspace("sweep")
    try:
        shutil.copy(h.REPO / "dvc_free_lock.yaml", folder / "real_lock.yaml")
        cli = h.ours("run", "--dry-run", "-m", *sweep_overrides(lrs, seeds))
        inproc = [h.PYTHON, "-m", "bench.inproc"]
        seconds: dict[str, list[float]] = {"cli_plan": [], "inproc_plan": [], "lock_read": []}
        for _ in range(1 if lrs * seeds > 100 else settings.repeat):
            seconds["cli_plan"].append(h.timed(cli, folder, env, settings.timeout))
            found = json.loads(h.run([*inproc, "plan", str(lrs), str(seeds)], folder, env))
            seconds["inproc_plan"].append(found["total"])
            result.extra.setdefault("inproc_split", []).append(found)
        lock_args = [*inproc, "lock", str(lrs), str(seeds), "real_lock.yaml"]
        found = json.loads(h.run(lock_args, folder, env))
        seconds["lock_read"].append(found["median"])
        result.extra.update(seconds=seconds, lock=found, members=lrs * seeds)
        if settings.profiles and result.met is False:
            # A tenth of the sweep shows the same profile at a tenth of the cost.
            small = (max(1, lrs // 4), max(1, seeds // 5))
            args = ["pipeline", "run", "--dry-run", "-m", *sweep_overrides(*small)]
            title = f"{result.title} (profiled at {small[0] * small[1]} members)"
            h.profile(args, folder, env, settings.profiles / f"{result.name}.txt", title)
            title = f"{result.title}: `pipeline.core.lockfile.read` of {found['blocks']} blocks"
            args = ["bench.inproc", "read", "sweep_lock.yaml"]
            h.profile(args, folder, env, settings.profiles / f"{result.name}_lock.txt", title)
    finally:
        h.remove(folder)
    return result


def sweep_in_lock(settings: Settings) -> Result:
    """`status` and a no-op `run` with a finished 20,000-member sweep's blocks in the lock.

    Twice each: with the parsed lock the tool keeps beside the store (the lock as our own
    run wrote it), and without (the lock as `git checkout` leaves it: read block by block).
    """
    lrs, seeds = (4, 3) if settings.smoke else (200, 100)
    result = Result(
        "sweep_in_lock",
        f"7. `status` and no-op `run` with a {lrs * seeds:,}-member sweep in the lock",
        "status < 1 s, run < 2 s",
        limit=2.0,
    )
    env = h.environment()
    folder = h.workspace("sweep-lock")
    limits = {"status": 1.0, "run": 2.0}
    try:
        h.run(h.ours("run", "train.epochs=1"), folder, env)
        h.run([h.PYTHON, "-m", "bench.inproc", "sweep-lock", str(lrs), str(seeds)], folder, env)
        seconds: dict[str, list[float]] = {}
        for kept in (True, False):
            if not kept:
                (folder / ".pipeline" / "lock.json").unlink()
            for command in ("status", "run"):
                label = f"{command} ({'parsed lock kept' if kept else 'lock just checked out'})"
                seconds[label] = []
                for _ in range(settings.repeat):
                    shutil.rmtree(folder / ".pipeline" / "memo", ignore_errors=True)
                    seconds[label].append(h.timed(h.ours(command), folder, env, settings.timeout))
        result.extra.update(seconds=seconds, members=lrs * seeds, limits=limits)
        if settings.profiles and result.met is False:
            target = settings.profiles / f"{result.name}.txt"
            h.profile(["pipeline", "status"], folder, env, target, result.title)
    finally:
        h.remove(folder)
    return result
