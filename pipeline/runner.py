"""Runs a plan: each stage as a hydra-zen task on store paths, outputs committed, lock rewritten."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import networkx as nx

from pipeline import compose, graph, lock
from pipeline.digest import code_files
from pipeline.errors import PipelineError, StageFailed, UsageError
from pipeline.lock import InputPin, Lock, StageLock
from pipeline.plan import Options, StageState, Step, decide, plan
from pipeline.spec import OUT_PARAM, StageSpec
from pipeline.store import Store

Report = Callable[[str, Step], None]


@dataclass
class Project:
    """A workspace with its stages, their current state, its lock and its store."""

    workspace: Path
    specs: dict[str, StageSpec]
    graph: nx.DiGraph
    lock: Lock
    store: Store
    states: dict[str, StageState]

    @property
    def lock_path(self) -> Path:
        """Where the lock lives."""
        return self.workspace / lock.LOCK_NAME

    def plan(self, targets: Sequence[str], options: Options | None = None) -> list[Step]:
        """The plan for these targets against the lock and the store."""
        return plan(self.graph, targets, self.states, self.lock, self.store, options or Options())


def load(
    workspace: Path,
    specs: Iterable[StageSpec],
    overrides: Mapping[str, Sequence[str]] | None = None,
    reset: Iterable[str] = (),
) -> Project:
    """Validate the DAG, read the lock, and compose every stage's config with its overrides."""
    specs_by_name = {s.name: s for s in specs}
    dag = graph.build(
        graph.Node(s.name, s.uses, tuple(o.name for o in s.logs)) for s in specs_by_name.values()
    )
    current = lock.read(workspace / lock.LOCK_NAME)
    compose.register(specs_by_name.values())
    reset = set(reset)
    states = {}
    for name, spec in specs_by_name.items():
        entry = current.stages.get(name)
        recorded = () if name in reset or entry is None else entry.overrides
        merged = compose.merge(recorded, (overrides or {}).get(name, ()))
        composed = compose.compose(spec, merged)
        states[name] = StageState(
            config=composed.config,
            overrides=merged,
            code=code_files(code_root(spec), [spec.module]),
            artifacts={o.name: o.artifact_name(composed.choices) for o in spec.logs},
        )
    return Project(workspace, specs_by_name, dag, current, Store(workspace), states)


def code_root(spec: StageSpec) -> Path:
    """The folder holding the stage's top-level package, so code paths read `stages/x.py`."""
    top = sys.modules[spec.module.split(".")[0]]
    file = getattr(top, "__file__", None)
    if file is None:
        raise UsageError(f"cannot locate the source of stage `{spec.name}` ({spec.module})")
    path = Path(file)
    return path.parent.parent if path.name == "__init__.py" else path.parent


def execute(
    project: Project, steps: Sequence[Step], options: Options, report: Report
) -> list[Step]:
    """Carry out the steps in order; the lock is rewritten after each stage that changed it."""
    known: dict[str, InputPin | None] = {}
    done: list[Step] = []
    for step in steps:
        if step.action == "run" and step.fingerprint is None:
            # Upstream outputs exist now: an input rebuilt unchanged may make this fresh.
            entry = project.lock.stages.get(step.stage)
            state = project.states[step.stage]
            step = decide(step.stage, project.graph, state, entry, project.store, options, known)
        if step.action == "run":
            report("start", step)
            step = _run(project, step)
        report("done", step)
        if step.action != "pin":
            _record(project, step)
        known.update({k: InputPin(p.name, p.version, p.digest) for k, p in step.outputs.items()})
        done.append(step)
    return done


def _quote(value: object) -> str:
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _run(project: Project, step: Step) -> Step:
    from hydra_zen import launch

    spec, state, store = project.specs[step.stage], project.states[step.stage], project.store
    assert step.fingerprint is not None
    staging = store.staging()
    stamp = f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{staging.name[:6]}"
    run_dir = project.workspace / "outputs" / spec.name / stamp
    paths = {a: str(store.path(p.name, p.version)) for a, p in step.inputs.items()}
    paths[OUT_PARAM] = str(staging)
    overrides = [*state.overrides, f"hydra.run.dir={_quote(run_dir)}"]
    run_id = store.start_run(spec.name, step.fingerprint, step.inputs)
    try:
        job = launch(
            spec.config,
            _with_paths(spec, paths),
            overrides=overrides,
            config_name=spec.name,
            job_name=spec.name,
            version_base="1.3",
        )
        metrics = _plain(job.return_value or {})
        outputs = {
            o.name: store.commit(staging / o.name, state.artifacts[o.name], o.type)
            for o in spec.logs
        }
    except (Exception, KeyboardInterrupt) as exc:
        store.end_run(run_id, None, {})
        if isinstance(exc, KeyboardInterrupt):
            raise
        detail = exc if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"
        raise StageFailed(f"stage `{spec.name}` failed: {detail}") from exc
    finally:
        store.clean_tmp(staging)
    store.end_run(run_id, outputs, metrics)
    return replace(step, outputs=outputs, metrics=metrics)


def _with_paths(spec: StageSpec, paths: Mapping[str, str]) -> Callable[[Any], Any]:
    """The task with its path parameters filled in after Hydra composed its config.

    Paths are not Hydra overrides: they would clash with config groups of the
    same name (``dataset``) and put absolute paths into what the lock records.
    """
    from hydra_zen import zen
    from omegaconf import DictConfig, OmegaConf

    task = zen(spec.task)

    def run(cfg: Any) -> Any:
        merged = OmegaConf.merge(cfg, dict(paths))
        assert isinstance(merged, DictConfig)
        return task(merged)

    return run


def _plain(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics as YAML-safe scalars (numpy and torch scalars have ``item``)."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        value = value.item() if hasattr(value, "item") else value
        out[str(key)] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


def _record(project: Project, step: Step) -> None:
    state = project.states[step.stage]
    assert step.fingerprint is not None
    entry = StageLock(
        fingerprint=step.fingerprint,
        code_digest=state.code_digest,
        code=dict(state.code),
        config=state.config,
        overrides=state.overrides,
        inputs=dict(step.inputs),
        outputs=dict(step.outputs),
        metrics=dict(step.metrics),
    )
    project.lock = project.lock.with_stage(step.stage, entry)
    lock.write(project.lock_path, project.lock)
