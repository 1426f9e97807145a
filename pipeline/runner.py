"""Runs a plan: each stage as a hydra-zen task on store paths, outputs committed, lock rewritten."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import networkx as nx

from pipeline import callback, compose, graph, lock
from pipeline.callback import ArtifactRef, StageRun, tracking
from pipeline.digest import code_files
from pipeline.errors import NotReproduced, PipelineError, StageFailed, UsageError
from pipeline.lock import InputPin, Lock, OutputPin, StageLock
from pipeline.plan import Options, StageState, Step, decide, plan
from pipeline.spec import OUT_PARAM, StageSpec
from pipeline.store import Store
from pipeline.sweep import Member, expand, slot_label

Report = Callable[[str, Step], None]


@dataclass
class Project:
    """A workspace with its stages, their current state, its lock and its store."""

    workspace: Path
    specs: dict[str, StageSpec]
    graph: nx.DiGraph
    lock: Lock
    store: Store
    states: dict[str, StageState]  # by member key: the stage's name outside a sweep
    members: dict[str, Member]
    wandb: dict[str, str] = field(default_factory=dict)  # W&B callback options

    @property
    def lock_path(self) -> Path:
        """Where the lock lives."""
        return self.workspace / lock.LOCK_NAME

    def plan(self, targets: Sequence[str], options: Options | None = None) -> list[Step]:
        """The plan for these targets against the lock and the store."""
        members = list(self.members.values())
        return plan(
            self.graph, targets, self.states, self.lock, self.store, options or Options(), members
        )

    def member_graph(self) -> nx.DiGraph:
        """Members and the artifacts between them, as the stage graph is for stages."""
        graph: nx.DiGraph = nx.DiGraph()
        for member in self.members.values():
            graph.add_node(member.key, uses=(), logs=member.logs)
            for _, made_by, artifact in member.inputs:
                if graph.has_edge(made_by, member.key):
                    graph.edges[made_by, member.key]["artifacts"] += (artifact,)
                else:
                    graph.add_edge(made_by, member.key, artifacts=(artifact,))
        return graph


def load(
    workspace: Path,
    specs: Iterable[StageSpec],
    overrides: Mapping[str, Sequence[str]] | None = None,
    reset: Iterable[str] = (),
    sweep: Mapping[str, Sequence[tuple[str, Sequence[str]]]] | None = None,
) -> Project:
    """Validate the DAG, read the lock, and compose every member's config with its overrides.

    A stage's config is the code's defaults, plus the overrides its lock block recorded
    (unless ``reset``), plus new ``overrides``, plus a sweep member's own values.
    """
    specs_by_name = {s.name: s for s in specs}
    dag = graph.build(
        graph.Node(s.name, s.uses, tuple(o.name for o in s.logs)) for s in specs_by_name.values()
    )
    current = lock.read(workspace / lock.LOCK_NAME)
    compose.register(specs_by_name.values())
    callback.register()
    fan_in = {name: spec.fan_in for name, spec in specs_by_name.items()}
    members = {m.key: m for m in expand(dag, list(dag), sweep, fan_in)}
    code = {
        name: code_files(code_root(spec), [spec.module]) for name, spec in specs_by_name.items()
    }
    states = {}
    for key, member in members.items():
        spec, entry = specs_by_name[member.stage], current.stages.get(member.stage)
        recorded = () if member.stage in set(reset) or entry is None else entry.overrides
        merged = compose.merge(recorded, [*(overrides or {}).get(member.stage, ()), *member.own])
        composed = compose.compose(spec, merged)
        states[key] = StageState(
            config=composed.config,
            overrides=merged,
            code=code[member.stage],
            artifacts={o.name: o.artifact_name(composed.choices) for o in spec.logs},
            stage=member.stage,
        )
    return Project(workspace, specs_by_name, dag, current, Store(workspace), states, members)


# Libraries whose version can change a stage's bits; recorded in the lock, not fingerprinted.
_LIBRARIES = ("numpy", "torch", "torchvision", "scikit-learn", "matplotlib", "mnist1d")


def environment() -> dict[str, str]:
    """Python's and the bit-relevant libraries' versions, read without importing them."""
    found = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def open_project(
    workspace: Path,
    argv_overrides: Sequence[str] = (),
    reset: Sequence[str] = (),
    multirun: bool = False,
) -> tuple[Project, dict[str, list[str]]]:
    """The project of `stages.STAGES` in a workspace, with command-line overrides applied.

    With ``multirun`` the overrides define a sweep's members and stick to nothing.
    """
    import stages

    names = [s.name for s in stages.STAGES]
    overrides = compose.split_overrides(argv_overrides, names)
    for name in reset:
        if name.replace("-", "_") not in names:
            raise UsageError(f"`--reset {name}`: no such stage; stages are {', '.join(names)}")
    resets = [r.replace("-", "_") for r in reset]
    if not multirun:
        return load(workspace, stages.STAGES, overrides, resets), overrides
    sweep = {stage: compose.sweep_values(stage, ovs) for stage, ovs in overrides.items()}
    return load(workspace, stages.STAGES, None, resets, sweep), overrides


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
    known: dict[tuple[str, str], InputPin | None] = {}
    done: list[Step] = []
    # One W&B group per invocation: the runs of one `pipeline run` sit together.
    group = f"pipeline-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    for step in steps:
        if step.action == "run" and step.fingerprint is None:
            # Upstream outputs exist now: an input rebuilt unchanged may make this fresh.
            entry = project.lock.stages.get(step.stage)
            state = project.states[step.stage]
            member = project.members[step.stage]
            step = decide(member, state, entry, project.store, options, known)
        if step.action == "run":
            if options.frozen:
                _check_frozen_before(project, step)
            report("start", step)
            step = _run(project, step, group)
            if options.frozen:
                _check_frozen_after(project, step)
        report("done", step)
        if step.action != "pin":
            _record(project, step)
        for artifact, pin in step.outputs.items():
            known[(step.stage, artifact)] = InputPin(pin.name, pin.version, pin.digest)
        done.append(step)
    return done


def _check_frozen_before(project: Project, step: Step) -> None:
    entry = project.lock.stages.get(step.stage)
    if entry is None:
        raise NotReproduced(
            f"`--frozen`: the lock pins nothing for `{step.stage}`; run it without --frozen first"
        )
    if step.fingerprint != entry.fingerprint:
        why = "; ".join(r for r in step.reasons if r != "forced") or "fingerprint changed"
        raise NotReproduced(f"stage `{step.stage}` no longer matches the lock: {why}")


def _check_frozen_after(project: Project, step: Step) -> None:
    pinned = project.lock.stages[step.stage].outputs
    for key, pin in sorted(step.outputs.items()):
        want = pinned.get(key)
        if want is None or want.digest != pin.digest:
            expected = f"{want.digest} ({want.name}:{want.version})" if want else "nothing"
            raise NotReproduced(
                f"stage `{step.stage}` did not reproduce the lock: artifact `{pin.name}` has "
                f"digest {pin.digest}, the lock pins {expected}; the lock is left unchanged"
            )


def _quote(value: object) -> str:
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _run(project: Project, step: Step, group: str) -> Step:
    from hydra_zen import launch

    state, store = project.states[step.stage], project.store
    spec = project.specs[state.stage]
    assert step.fingerprint is not None
    staging = store.staging()
    stamp = f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{staging.name[:6]}"
    run_dir = project.workspace / "outputs" / spec.name / stamp
    tracked = _stage_run(project, step, group)
    overrides = [
        *state.overrides,
        f"hydra.run.dir={_quote(run_dir)}",
        # Logs go to stderr: stdout belongs to the CLI (`--json` documents).
        "hydra.job_logging.handlers.console.stream=ext://sys.stderr",
        *(f"hydra.callbacks.wandb.{k}={_quote(v)}" for k, v in sorted(project.wandb.items())),
    ]
    env = environment()
    run_id = store.runs.start(
        spec.name, step.fingerprint, step.inputs, state.config, state.code_digest, env
    )
    outputs: dict[str, OutputPin] = {}
    try:
        with tracking(tracked):
            launch(
                spec.config,
                _task(project, step.stage, spec, tracked, staging, outputs),
                overrides=overrides,
                config_name=spec.name,
                job_name=spec.name,
                version_base="1.3",
            )
    except (Exception, KeyboardInterrupt) as exc:
        store.runs.end(run_id, None, {}, tracked.tracking)
        if isinstance(exc, KeyboardInterrupt):
            raise
        detail = exc if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"
        raise StageFailed(f"stage `{spec.name}` failed: {detail}") from exc
    finally:
        store.clean_tmp(staging)
    store.runs.end(run_id, outputs, tracked.metrics, tracked.tracking)
    return replace(step, outputs=outputs, metrics=tracked.metrics, environment=env)


def _stage_run(project: Project, step: Step, group: str) -> StageRun:
    """What the W&B callback needs to know of this stage run."""
    state, store = project.states[step.stage], project.store
    spec = project.specs[state.stage]
    types = {o.name: o.type for s in project.specs.values() for o in s.logs}
    return StageRun(
        stage=spec.name,
        config=state.config,
        inputs={
            slot: ArtifactRef(
                p.name, types[_artifact(slot)], store.path(p.name, p.version), p.version
            )
            for slot, p in step.inputs.items()
        },
        fingerprint=step.fingerprint or "",
        group=group,
        workspace=project.workspace,
        media=frozenset(o.name for o in spec.logs if o.media),
    )


def _task(
    project: Project,
    member_key: str,
    spec: StageSpec,
    tracked: StageRun,
    staging: Path,
    outputs: dict[str, OutputPin],
) -> Callable[[Any], Any]:
    """The Hydra task: the stage on its paths, then its outputs committed to the store.

    Paths are not Hydra overrides: they would clash with config groups of the same
    name (``dataset``) and put absolute paths into what the lock records.  Outputs
    are committed inside the job so that the callback's ``on_job_end`` can log them
    with their local versions.
    """
    from hydra_zen import zen
    from omegaconf import DictConfig, OmegaConf

    task = zen(spec.task)
    paths: dict[str, Any] = {OUT_PARAM: str(staging)}
    for slot, ref in tracked.inputs.items():
        if _artifact(slot) in spec.fan_in:  # gathered inputs arrive as {member label: folder}
            paths.setdefault(_artifact(slot), {})[slot_label(slot)] = str(ref.path)
        else:
            paths[slot] = str(ref.path)
    names = project.states[member_key].artifacts

    def run(cfg: Any) -> Any:
        merged = OmegaConf.merge(cfg, paths)
        assert isinstance(merged, DictConfig)
        tracked.metrics = _plain(task(merged) or {})
        for out in spec.logs:
            pin = project.store.commit(staging / out.name, names[out.name], out.type)
            outputs[out.name] = pin
            tracked.outputs[out.name] = ArtifactRef(
                pin.name, pin.type, project.store.path(pin.name, pin.version), pin.version
            )
        return tracked.metrics

    return run


def _artifact(slot: str) -> str:
    """The artifact a slot carries: ``evaluation@train.lr=0.1`` -> ``evaluation``."""
    return slot.split("@", 1)[0]


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
        environment=dict(step.environment),
    )
    project.lock = project.lock.with_stage(step.stage, entry)
    lock.write(project.lock_path, project.lock)
