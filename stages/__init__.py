"""The pipeline's stages: the DAG on one screen.

A new stage is a new module ``stages/<stage>.py`` defining ``task`` and ``SPEC``, plus one
line in ``STAGES`` below.  Edges are never written by hand: they follow from each spec's
``uses`` and ``logs``.  ``STAGES`` is built on first access (PEP 562) so that
``python -m stages.<stage>`` does not import its own module twice and a bare
``import stages`` stays cheap; none of this imports torch, matplotlib or wandb.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.spec import StageSpec

    STAGES: tuple[StageSpec, ...]

__all__ = ["STAGES"]


def __getattr__(name: str) -> object:
    if name != "STAGES":
        raise AttributeError(f"module `stages` has no attribute `{name}`")
    from stages import evaluate, plot, prepare_data, train

    stages = (prepare_data.SPEC, train.SPEC, evaluate.SPEC, plot.SPEC)
    globals()["STAGES"] = stages
    return stages
