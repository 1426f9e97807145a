"""Benchmarks 1 to 4: our CLI and DVC on the same work, side by side."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench import harness as h
from bench.harness import Result, Settings

_TRAIN_KEYS = ("epochs", "lr", "batch_size", "weight_decay", "seed")
_MODULES = {s: f"stages.{s}" for s in ("prepare_data", "train", "evaluate", "plot")}


def _params(settings: Settings) -> dict[str, dict[str, Any]]:
    """The default config of the four stages (one training epoch in a smoke run)."""
    train = dict(zip(_TRAIN_KEYS, (30, 0.003, 64, 0.0001, 0), strict=True))
    if settings.smoke:
        train["epochs"] = 1
    return {
        "prepare_data": {"val_fraction": 0.1, "test_fraction": 0.2, "seed": 0},
        "train": train,
        "evaluate": {"batch_size": 256},
        "plot": {"dpi": 100},
    }


def _ours_overrides(settings: Settings) -> list[str]:
    return ["train.epochs=1"] if settings.smoke else []


def _write_default_dvc(folder: Path, settings: Settings) -> None:
    """dvc.yaml: the four stages as `python -m stages.<stage>`, deps as our fingerprint's."""
    from pipeline.core.digest import code_files

    params = _params(settings)
    ins = {
        "prepare_data": {},
        "train": {"dataset": "data/dataset"},
        "evaluate": {"model": "data/model", "dataset": "data/dataset"},
        "plot": {"evaluation": "{default:data/evaluation}", "model": "{default:data/model}"},
    }
    outs = {"prepare_data": "dataset", "train": "model", "evaluate": "evaluation", "plot": "plots"}
    stages = {}
    for stage, module in _MODULES.items():
        args = [f"{k}={v}" for k, v in ins[stage].items()]
        args += ["out=data", *(f"{k}=${{{stage}.{k}}}" for k in params[stage])]
        data = [f"data/{k}" for k in ins[stage]]
        stages[stage] = {
            "cmd": f"python -m {module} " + " ".join(f"'{a}'" for a in args),
            "deps": [*data, *code_files(folder, [module])],
            "params": [stage],
            "outs": [f"data/{outs[stage]}"],
        }
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=True))
    (folder / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))


def _big_sizes(settings: Settings) -> dict[str, tuple[str, str, int]]:
    """Stage -> (artifact, config key, amount): 1 GiB and 10k files (tiny in a smoke run)."""
    return {
        "big_file": ("blob", "size_mb", 4 if settings.smoke else 1024),
        "many_files": ("shards", "count", 50 if settings.smoke else 10_000),
    }


def _write_big_dvc(folder: Path, stages: list[str], settings: Settings) -> None:
    sizes = _big_sizes(settings)
    doc = {
        stage: {
            "cmd": f"python -m bench.bigstages.write {sizes[stage][0]} data {sizes[stage][2]}",
            "deps": ["bench/bigstages/write.py"],
            "outs": [f"data/{sizes[stage][0]}"],
        }
        for stage in stages
    }
    (folder / "dvc.yaml").write_text(yaml.safe_dump({"stages": doc}, sort_keys=False))


def _big_overrides(stages: list[str], settings: Settings) -> list[str]:
    sizes = _big_sizes(settings)
    return [f"{s}.{sizes[s][1]}={sizes[s][2]}" for s in stages]


class _Pair:
    """Our workspace and DVC's, set up alike; the `dvc` side is None when DVC sits out."""

    def __init__(self, tag: str, settings: Settings, stages: str | None = None) -> None:
        self.settings = settings
        self.env = h.environment(stages)
        self.ours = h.workspace(f"{tag}-ours")
        self.dvc = h.workspace(f"{tag}-dvc") if settings.dvc else None

    def setup_dvc(self, write: Any) -> None:
        if self.dvc is not None:
            write(self.dvc)
            h.dvc_init(self.dvc, self.env, self.settings.scm)

    def close(self) -> None:
        h.remove(self.ours)
        if self.dvc is not None:
            h.remove(self.dvc)

    def time_ours(self, *args: str) -> float:
        return h.timed(h.ours(*args), self.ours, self.env, self.settings.timeout)

    def time_dvc(self, *args: str) -> float:
        assert self.dvc is not None
        return h.timed(h.dvc(*args), self.dvc, self.env, self.settings.timeout)

    def side_by_side(
        self, rounds: int, ours: list[str], dvc: list[str]
    ) -> tuple[list[float], list[float]]:
        second = (lambda: self.time_dvc(*dvc)) if self.dvc is not None else None
        return h.alternate(rounds, lambda: self.time_ours(*ours), second)


def _check_default_outputs(folder: Path) -> None:
    pngs = sorted(p.name for p in (folder / "data" / "plots").glob("*.png"))
    if len(pngs) != 3:
        raise RuntimeError(f"DVC's pipeline in {folder} made {pngs}, not the three figures")


def noop_run(settings: Settings) -> Result:
    """1. No-op `run` against no-op `dvc repro`, the default 4-stage pipeline."""
    result = Result("noop_run", "1. no-op `run` vs `dvc repro` (4 stages)", "<= 0.35", limit=0.35)
    pair = _Pair("noop", settings)
    return _no_op(
        settings,
        result,
        pair,
        first=["run", *_ours_overrides(settings)],
        write_dvc=lambda f: _write_default_dvc(f, settings),
        command="run",
        fresh=lambda out: "nothing to run" in out,
        dvc_command="repro",
    )


def noop_status(settings: Settings) -> Result:
    """2. No-op `status` against `dvc status`, with a 1 GiB and a 10k-file artifact."""
    result = Result(
        "noop_status",
        "2. no-op `status` vs `dvc status` (1 GiB + 10k files)",
        "<= 0.35",
        limit=0.35,
    )
    stages = list(_big_sizes(settings))
    pair = _Pair("status", settings, "bench.bigstages")
    return _no_op(
        settings,
        result,
        pair,
        first=["run", *_big_overrides(stages, settings)],
        write_dvc=lambda f: _write_big_dvc(f, stages, settings),
        command="status",
        fresh=lambda out: out.count("fresh") == len(stages),
        dvc_command="status",
    )


def _no_op(
    settings: Settings,
    result: Result,
    pair: _Pair,
    first: list[str],
    write_dvc: Callable[[Path], None],
    command: str,
    fresh: Callable[[str], bool],
    dvc_command: str,
) -> Result:
    """Run both pipelines once, check ours is fresh, then time the no-op side by side."""
    try:
        h.run(h.ours(*first), pair.ours, pair.env)
        pair.setup_dvc(write_dvc)
        if pair.dvc is not None:
            h.run(h.dvc("repro"), pair.dvc, pair.env)
            if dvc_command == "repro":
                _check_default_outputs(pair.dvc)
        if not fresh(h.run(h.ours(command), pair.ours, pair.env)):
            raise RuntimeError(f"our `{command}` after the first run is not all fresh")
        result.ours, result.dvc = pair.side_by_side(settings.repeat, [command], [dvc_command])
        _profile(settings, result, ["pipeline", command], pair)
    finally:
        pair.close()
    return result


def first_commit(settings: Settings, stage: str) -> Result:
    """3. First run of a stage writing 1 GiB or 10k files: command, hash, store, lock."""
    artifact, _, amount = _big_sizes(settings)[stage]
    what = "1 GiB file" if stage == "big_file" else "10k files"
    result = Result(
        f"first_commit_{artifact}",
        f"3. first commit of {what} vs first `dvc repro`",
        "<= 0.5",
        limit=0.5,
    )
    env = h.environment("bench.bigstages")
    override = _big_overrides([stage], settings)

    def ours() -> float:
        folder = h.workspace(f"commit-{artifact}-ours")
        try:
            return h.timed(h.ours("run", stage, *override), folder, env, settings.timeout)
        finally:
            h.remove(folder)

    def dvc() -> float:
        folder = h.workspace(f"commit-{artifact}-dvc")
        try:
            _write_big_dvc(folder, [stage], settings)
            h.dvc_init(folder, env, settings.scm)
            return h.timed(h.dvc("repro"), folder, env, settings.timeout)
        finally:
            h.remove(folder)

    def writer() -> float:
        folder = h.workspace(f"commit-{artifact}-writer")
        try:
            args = [h.PYTHON, "-m", "bench.bigstages.write", artifact, "data", str(amount)]
            return h.timed(args, folder, env, settings.timeout)
        finally:
            h.remove(folder)

    rounds = settings.heavy_repeat
    result.ours, result.dvc = h.alternate(rounds, ours, dvc if settings.dvc else None)
    result.extra["writer_alone"] = [writer() for _ in range(rounds)]
    if settings.profiles and result.met is False:
        folder = h.workspace(f"commit-{artifact}-profile")
        try:
            args = ["pipeline", "run", stage, *override]
            h.profile(args, folder, env, settings.profiles / f"{result.name}.txt", result.title)
        finally:
            h.remove(folder)
    return result


def full_pipeline(settings: Settings) -> Result:
    """4. The default pipeline from an empty store against the same four DVC stages."""
    result = Result(
        "full_pipeline", "4. full default pipeline vs `dvc repro` from empty", "<= 0.6", limit=0.6
    )
    env = h.environment()

    def ours() -> float:
        folder = h.workspace("full-ours")
        try:
            args = h.ours("run", *_ours_overrides(settings))
            return h.timed(args, folder, env, settings.timeout)
        finally:
            h.remove(folder)

    def dvc() -> float:
        folder = h.workspace("full-dvc")
        try:
            _write_default_dvc(folder, settings)
            h.dvc_init(folder, env, settings.scm)
            seconds = h.timed(h.dvc("repro"), folder, env, settings.timeout)
            _check_default_outputs(folder)
            return seconds
        finally:
            h.remove(folder)

    def floor() -> float:
        folder = h.workspace("full-floor")
        try:
            _write_default_dvc(folder, settings)
            seconds = h.timed([h.PYTHON, "-m", "bench.floor"], folder, env, settings.timeout)
            _check_default_outputs(folder)
            return seconds
        finally:
            h.remove(folder)

    rounds = settings.heavy_repeat
    floors: list[float] = []

    def ours_then_floor() -> float:
        seconds = ours()
        floors.append(floor())
        return seconds

    result.ours, result.dvc = h.alternate(rounds, ours_then_floor, dvc if settings.dvc else None)
    result.extra["floor"] = floors
    if settings.profiles and result.met is False:
        folder = h.workspace("full-profile")
        try:
            args = ["pipeline", "run", *_ours_overrides(settings)]
            h.profile(args, folder, env, settings.profiles / f"{result.name}.txt", result.title)
        finally:
            h.remove(folder)
    return result


def _profile(settings: Settings, result: Result, args: list[str], pair: _Pair) -> None:
    if settings.profiles and result.met is False:
        target = settings.profiles / f"{result.name}.txt"
        h.profile(args, pair.ours, pair.env, target, result.title)
