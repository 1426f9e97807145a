"""A stage run as a stand-alone Hydra app (`python -m stages.train`), as the callback sees it.

Without the orchestrator, the job's inputs and outputs are the paths its config names: a
path inside a store (`.pipeline/artifacts/model/v2`) is that version, any other path an
artifact of the stage's own name.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline.execution.compose import config_keys
from pipeline.execution.discover import stage_spec, stage_specs
from pipeline.execution.job import ArtifactRef, StageRun
from pipeline.spec import OUT_PARAM, StageSpec

_STORE_PATH = re.compile(r"/artifacts/(?P<name>[^/]+)/(?P<version>v\d+)/?$")


def _spec(config: DictConfig) -> StageSpec:
    return stage_spec(str(config.hydra.job.name))


def _producer_types() -> dict[str, str]:
    return {o.name: o.type for spec in stage_specs() for o in spec.logs}


def stage_run(config: DictConfig) -> StageRun:
    """The stage run as a stand-alone Hydra app sees it: paths come from its config."""
    spec = _spec(config)
    types = _producer_types()
    inputs = {}
    for use in spec.uses:
        path = Path(str(config[use])).resolve()
        found = _STORE_PATH.search(path.as_posix())
        name, version = (found["name"], found["version"]) if found else (use, "")
        inputs[use] = ArtifactRef(name, types.get(use, use), path, version)
    plain = OmegaConf.to_container(OmegaConf.masked_copy(config, config_keys(spec, config)))
    assert isinstance(plain, dict)
    media = frozenset(o.name for o in spec.logs if o.media)
    return StageRun(spec.name, {str(k): v for k, v in plain.items()}, inputs, media=media)


def outputs(config: DictConfig) -> dict[str, ArtifactRef]:
    """The outputs a stand-alone run wrote: the folders under its output path."""
    spec = _spec(config)
    found = OmegaConf.to_container(config.hydra.runtime.choices)
    assert isinstance(found, dict)
    choices = {str(k): str(v) for k, v in found.items()}
    out = Path(str(config[OUT_PARAM]))
    return {o.name: ArtifactRef(o.artifact_name(choices), o.type, out / o.name) for o in spec.logs}
