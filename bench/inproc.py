"""In-process timings, imports excluded: `python -m bench.inproc plan|lock LRS SEEDS [LOCK]`."""

from __future__ import annotations

import importlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pipeline.core import graph, lock, lockfile, paths
from pipeline.core.paths import lock_cache
from pipeline.execution import discover
from pipeline.execution.project import open_project


def sweep_overrides(lrs: int, seeds: int) -> list[str]:
    """A sweep of ``lrs * seeds`` members: `train.lr` by `train.seed`."""
    values = ",".join(f"{0.0001 * (i + 1):.4f}" for i in range(lrs))
    return [f"train.lr={values}", "train.seed=" + ",".join(str(s) for s in range(seeds))]


def plan_seconds(lrs: int, seeds: int) -> dict[str, float]:
    """Seconds to open the project with the sweep (compose every member) and to plan it."""
    discover.stage_specs()  # the stage modules and Hydra are imported before the clock starts
    importlib.import_module("networkx")  # and networkx, which builds the DAG
    start = time.perf_counter()
    project, _ = open_project(Path.cwd(), sweep_overrides(lrs, seeds), multirun=True)
    opened = time.perf_counter()
    steps = project.plan(graph.sinks(project.graph))
    done = time.perf_counter()
    total = done - start
    return {"open": opened - start, "plan": done - opened, "total": total, "steps": len(steps)}


def synthetic_lock(source: Path, lrs: int, seeds: int) -> lock.Lock:
    """The lock a finished `lrs * seeds` sweep leaves, from the real blocks in ``source``."""
    real = lockfile.read(source).stages
    stages = {"prepare_data": real["prepare_data"]}
    lr_values, seed_values = sweep_overrides(lrs, seeds)
    for lr in lr_values.split("=")[1].split(","):
        for seed in seed_values.split("=")[1].split(","):
            label = f"train.lr={lr},train.seed={seed}"
            config = {**real["train"].config, "lr": float(lr), "seed": int(seed)}
            stages[f"train[{label}]"] = replace(real["train"], config=config)
            stages[f"evaluate[{label}]"] = real["evaluate"]
    swept = f"train.lr={lr_values.split('=')[1].replace(',', '|')},train.seed=..."
    stages[f"plot[{swept}]"] = real["plot"]
    return lock.Lock(stages)


def _median_seconds(read: Callable[[], lock.Lock], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        read()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def lock_seconds(source: Path, lrs: int, seeds: int, rounds: int = 3) -> dict[str, float]:
    """Median seconds to load a sweep's lock: as the runner does (its cache), and as YAML."""
    target = Path("sweep_lock.yaml")
    found = synthetic_lock(source, lrs, seeds)
    text = lock.dumps(found)
    target.write_text(text, encoding="utf-8")
    result: dict[str, float] = {"blocks": len(found.stages), "bytes": len(text)}
    result["yaml"] = _median_seconds(lambda: lockfile.read(target), rounds)
    path = lock_cache(Path.cwd())  # the runner's read: the parsed lock kept as JSON
    lockfile.read(target, cache=path)  # the write of the lock leaves it so
    result["cached"] = _median_seconds(lambda: lockfile.read(target, cache=path), rounds)
    result["median"] = result["cached"]
    return result


if __name__ == "__main__":
    mode, *numbers = sys.argv[1:]
    if mode == "read":  # once, to be profiled
        sys.exit(not lockfile.read(Path(numbers[0])).stages)
    lrs, seeds = int(numbers[0]), int(numbers[1])
    if mode == "plan":
        print(json.dumps(plan_seconds(lrs, seeds)))
    elif mode == "sweep-lock":  # the workspace's lock, with a finished sweep's blocks added
        here = Path(paths.LOCK_NAME)
        found = synthetic_lock(here, lrs, seeds)
        lockfile.write(
            here, lock.Lock({**found.stages, **lockfile.read(here).stages}), lock_cache(Path.cwd())
        )
    else:
        print(json.dumps(lock_seconds(Path(numbers[2]), lrs, seeds)))
