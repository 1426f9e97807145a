"""Run one stage as a Hydra app: `python -m stages.<stage> [overrides]`."""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Any

import hydra
from hydra.conf import HelpConf, HydraConf
from hydra_zen import ZenStore, zen
from hydra_zen.third_party.pydantic import pydantic_parser

from pipeline.spec import StageSpec, pin_cpu_numerics
from stages import keys


def main(spec: StageSpec) -> None:
    """Register ``spec``'s config and group options with Hydra, then run its task."""
    pin_cpu_numerics()  # the same bits as under the pipeline, on any x86-64 machine
    spec = _canonical(spec)
    # A store of our own, overwritable: the stage module may be imported twice
    # (as `stages.<name>` and as `__main__`) and must not clash with itself.
    store = ZenStore(name=f"lineage-{spec.name}", overwrite_ok=True)
    store(spec.config, name=spec.name)
    for group, options in spec.groups.items():
        for option, config in options.items():
            store(config, group=group, name=option)
    # Tracked in W&B like a pipeline run. The callback is named, not imported: stage code
    # stays free of wandb and of the orchestrator (see the import contracts).
    store(
        HydraConf(
            callbacks={"wandb": {"_target_": "pipeline.execution.callback.WandbCallback"}},
            # `--help` lists each key with its type, range and default.
            help=HelpConf(app_name=spec.name, template=keys.help_template(spec, sys.argv[1:])),
        )
    )
    store.add_to_hydra_store(overwrite_ok=True)
    # The value ranges the task declares (`stages.values`), checked by pydantic when Hydra
    # hands them over (the orchestrator checks them, its builds' too, before a run).
    task = zen(pydantic_parser(spec.task))

    # Equivalent to `task.hydra_main(...)`, but Hydra names the job after the function it
    # unwraps to, so the job (and its log file) is `train`, not `_implementations`.
    @functools.wraps(spec.task)
    def run(config: Any) -> Any:
        return task(config)

    hydra.main(config_name=spec.name, config_path=None, version_base="1.3")(run)()


def _canonical(spec: StageSpec) -> StageSpec:
    """The spec as defined in its importable module rather than in `__main__`.

    Under `python -m stages.train` the task's `_target_` would read `__main__.train`;
    importing the module by its real name keeps configs identical however a stage runs.
    """
    main_spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec.module != "__main__" or main_spec is None:
        return spec
    return importlib.import_module(main_spec.name).SPEC
