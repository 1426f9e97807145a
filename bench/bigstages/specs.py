"""The benchmark stages' specs: each writes one big artifact with `bench.bigstages.write`."""

from __future__ import annotations

from pathlib import Path

from hydra_zen import builds

from bench.bigstages import write
from pipeline.spec import Output, StageSpec


def big_file(out: Path, size_mb: int = 1024) -> dict[str, float]:
    """One file of ``size_mb`` MiB, artifact `blob`."""
    return {"bytes": write.blob(Path(out) / "blob", size_mb)}


def many_files(out: Path, count: int = 10_000) -> dict[str, float]:
    """``count`` files of 1 to 4 KiB, artifact `shards`."""
    return {"bytes": write.shards(Path(out) / "shards", count)}


STAGES = (
    StageSpec(
        name="big_file",
        task=big_file,
        config=builds(big_file, populate_full_signature=True),
        logs=(Output("blob", "dataset"),),
    ),
    StageSpec(
        name="many_files",
        task=many_files,
        config=builds(many_files, populate_full_signature=True),
        logs=(Output("shards", "dataset"),),
    ),
)
