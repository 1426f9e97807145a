"""Benchmark stages (a 1 GiB file, 10k small files), for `PIPELINE_STAGES=bench.bigstages`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.spec import StageSpec

    STAGES: tuple[StageSpec, ...]

__all__ = ["STAGES"]


def __getattr__(name: str) -> object:
    # Lazy, so that `python -m bench.bigstages.write` (DVC's command) imports no Hydra.
    if name != "STAGES":
        raise AttributeError(f"module `bench.bigstages` has no attribute `{name}`")
    from bench.bigstages.specs import STAGES

    globals()["STAGES"] = STAGES
    return STAGES
