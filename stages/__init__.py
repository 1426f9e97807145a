"""The pipeline's stages: the DAG on one screen.

A new stage is a new module ``stages/<stage>.py`` defining its task and ``SPEC``, plus one
line in ``_MODULES`` below.  Edges are never written by hand: they follow from each spec's
``uses`` and ``logs``.  ``STAGES`` (prepare_data.SPEC, train.SPEC, evaluate.SPEC,
plot.SPEC, ...) is built on first access (PEP 562), so ``python -m stages.<stage>`` does not
import its own module twice, and none of this imports torch, matplotlib or wandb.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.spec import StageSpec

    STAGES: tuple[StageSpec, ...]

__all__ = ["STAGES"]

_MODULES = (
    "prepare_data",
    "train",
    "evaluate",
    "plot",
)


def __getattr__(name: str) -> object:
    if name != "STAGES":
        raise AttributeError(f"module `stages` has no attribute `{name}`")
    stages = tuple(importlib.import_module(f"stages.{m}").SPEC for m in _MODULES)
    globals()["STAGES"] = stages
    return stages
