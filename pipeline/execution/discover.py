"""Stage discovery: the project's stage specs, from the package `$PIPELINE_STAGES` names.

The runner, the launcher, the callback and the command line all ask here, so the list of
stages is read and checked in one place.
"""

from __future__ import annotations

import importlib

from pipeline.core.errors import UsageError
from pipeline.core.paths import STAGES_ENV, stages_package
from pipeline.spec import StageSpec


def stage_specs() -> tuple[StageSpec, ...]:
    """The project's stages: ``STAGES`` of the package `$PIPELINE_STAGES` names (`stages`)."""
    package = stages_package()
    try:
        module = importlib.import_module(package)
        specs: tuple[StageSpec, ...] = tuple(getattr(module, "STAGES", ()))
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"`{STAGES_ENV}={package}`: no such package ({exc}); "
            "name an importable package that defines STAGES"
        ) from exc
    except SyntaxError as exc:  # a stage module being edited: where, and what
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else package
        raise UsageError(f"`{where}`: {exc.msg}; fix the stage's code and rerun") from None
    if not specs:
        raise UsageError(f"package `{package}` defines no STAGES; list its stage specs there")
    names: set[str] = set()
    for spec in specs:
        if not isinstance(spec, StageSpec):
            raise UsageError(
                f"`{package}.STAGES` holds {type(spec).__name__} `{spec!r:.60}`, not a "
                "StageSpec; list each stage's SPEC there"
            )
        if spec.name in names:
            raise UsageError(
                f"`{package}.STAGES` lists two stages named `{spec.name}`; give each its own name"
            )
        names.add(spec.name)
    return specs


def stage_spec(name: str) -> StageSpec:
    """The spec of the stage called ``name`` in the project's stages."""
    for spec in stage_specs():
        if spec.name == name:
            return spec
    raise LookupError(f"no stage named `{name}` in the project's STAGES")
