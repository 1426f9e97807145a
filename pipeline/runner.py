"""Runs a plan: each stage as a hydra-zen task on store paths, outputs committed, lock rewritten."""

from __future__ import annotations

import contextlib
import itertools
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import networkx as nx
from filelock import FileLock, Timeout

from pipeline import callback, compose, graph, lock, memo
from pipeline.callback import ArtifactRef
from pipeline.digest import code_files
from pipeline.errors import ConfigError, NotReproduced, UsageError
from pipeline.launch import MemberJob, WaveTask, launch_wave, quote
from pipeline.lock import InputPin, Lock, OutputPin, StageLock
from pipeline.plan import Options, StageState, Step, decide, plan
from pipeline.pull import TeamCache
from pipeline.spec import StageSpec
from pipeline.store import Store
from pipeline.sweep import Member, expand

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
    launcher: list[str] = field(default_factory=list)  # Hydra overrides: hydra/launcher=...

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

    def watched(self, steps: Iterable[Step]) -> list[Path]:
        """Every file a fresh plan depends on: lock, index, code, and the outputs' files."""
        paths = [self.lock_path, self.store.root / "index.sqlite", memo.stamp(self.store.root)]
        paths += Path(__file__).parent.glob("*.py")  # this tool's own code
        code = {state.stage: state.code for state in self.states.values()}
        for name, spec in self.specs.items():
            root = code_root(spec)
            # Every module of the stages' package (its list of stages too), and what a
            # stage imports from elsewhere.
            paths += (root / spec.module.split(".")[0]).rglob("*.py")
            paths += (root / rel for rel in code[name])
        for step in steps:
            for pin in step.outputs.values():
                folder = self.store.path(pin.name, pin.version)
                paths += [folder, *folder.rglob("*")]
        return paths

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
    current = lock.read(workspace / lock.LOCK_NAME, cache=lock_cache(workspace))
    compose.register(specs_by_name.values())
    callback.register()
    fan_in = {name: spec.fan_in for name, spec in specs_by_name.items()}
    members = {m.key: m for m in expand(dag, list(dag), sweep, fan_in)}
    code = {
        name: code_files(code_root(spec), [spec.module]) for name, spec in specs_by_name.items()
    }
    merged = {}
    for key, member in members.items():
        entry = current.stages.get(member.stage)
        recorded = () if member.stage in set(reset) or entry is None else entry.overrides
        new = [*(overrides or {}).get(member.stage, ()), *member.own]
        merged[key] = compose.merge(recorded, new)
    states = {}
    for name, spec in specs_by_name.items():
        keys = [k for k, m in members.items() if m.stage == name]
        composed_all = compose.compose_all(spec, [merged[k] for k in keys])
        for key, composed in zip(keys, composed_all, strict=True):
            states[key] = StageState(
                config=composed.config,
                overrides=merged[key],
                code=code[name],
                artifacts={o.name: o.artifact_name(composed.choices) for o in spec.logs},
                stage=name,
            )
    return Project(workspace, specs_by_name, dag, current, Store(workspace), states, members)


def lock_cache(workspace: Path) -> Path:
    """Where the parsed lock is kept, so that an unchanged lock loads without YAML."""
    return workspace / memo.STORE_DIR / "lock.json"


def open_project(
    workspace: Path,
    argv_overrides: Sequence[str] = (),
    reset: Sequence[str] = (),
    multirun: bool = False,
) -> tuple[Project, dict[str, list[str]]]:
    """The project of the stages (`callback.stage_specs`) in a workspace, with overrides applied.

    With ``multirun`` the overrides define a sweep's members and stick to nothing.
    """
    specs = callback.stage_specs()
    names = [s.name for s in specs]
    overrides = compose.split_overrides(argv_overrides, names)
    for name in reset:
        if name.replace("-", "_") not in names:
            raise UsageError(f"`--reset {name}`: no such stage; stages are {', '.join(names)}")
    resets = [r.replace("-", "_") for r in reset]
    if not multirun:
        return load(workspace, specs, overrides, resets), overrides
    sweep = {stage: compose.sweep_values(stage, ovs) for stage, ovs in overrides.items()}
    return load(workspace, specs, None, resets, sweep), overrides


def code_root(spec: StageSpec) -> Path:
    """The folder holding the stage's top-level package, so code paths read `stages/x.py`."""
    top = sys.modules[spec.module.split(".")[0]]
    file = getattr(top, "__file__", None)
    if file is None:
        raise UsageError(f"cannot locate the source of stage `{spec.name}` ({spec.module})")
    path = Path(file)
    return path.parent.parent if path.name == "__init__.py" else path.parent


def execute(
    project: Project,
    steps: Sequence[Step],
    options: Options,
    report: Report,
    team: TeamCache | None = None,
) -> list[Step]:
    """Carry out the steps stage by stage; the lock is rewritten after each stage.

    A stage's members to run form one wave, launched as one Hydra multirun, so that a
    parallel launcher (``hydra/launcher=joblib``) runs them side by side. With a
    ``team`` cache, a member whose fingerprint already ran on W&B is pulled instead.
    """
    _preflight(project, steps)
    known: dict[tuple[str, str], InputPin | None] = {}
    done: list[Step] = []
    # One W&B group per invocation: the runs of one `pipeline run` sit together.
    group = f"pipeline-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    for _, members in itertools.groupby(steps, key=lambda s: project.states[s.stage].stage):
        with contextlib.ExitStack() as claims:
            ready = _claim(project, members, options, known, report, claims)
            if team is not None:
                ready = [_from_team(project, step, options, team) for step in ready]
            wave = [step for step in ready if step.action == "run"]
            for step in wave:
                if options.frozen:
                    _check_frozen_before(project, step)
                report("start", step)
            finished = {s.stage: s for s in _run_wave(project, wave, group)} if wave else {}
        for step in ready:
            step = finished.get(step.stage, step)
            if options.frozen and step.stage in finished:
                _check_frozen_after(project, step)
            report("done", step)
            if step.action != "pin":
                _record(project, step)
            for artifact, pin in step.outputs.items():
                known[(step.stage, artifact)] = InputPin(pin.name, pin.version, pin.digest)
            done.append(step)
    return done


def _from_team(project: Project, step: Step, options: Options, team: TeamCache) -> Step:
    """A member to run, pulled from W&B when its fingerprint ran there (and then recorded)."""
    state = project.states[step.stage]
    if step.action != "run" or step.fingerprint is None or state.stage in options.force:
        return step
    types = {o.name: o.type for o in project.specs[state.stage].logs}
    outputs = {k: (name, types[k]) for k, name in state.artifacts.items()}
    pulled, run = team.reuse(project.store, step, outputs)
    if run is not None:
        where = team.where()
        runs = project.store.runs
        run_id = runs.start(
            step.stage,
            step.fingerprint,
            step.inputs,
            state.config,
            state.code_digest,
            pulled.environment,
        )
        tracking = {
            "id": run,
            "mode": "online",
            "project": where.project if where else None,
            "entity": where.entity if where else None,
            "pulled": True,
        }
        runs.end(run_id, pulled.outputs, pulled.metrics, tracking)
    return pulled


def _preflight(project: Project, steps: Sequence[Step]) -> None:
    """Each stage's own check of its config, for every member to run, before anything runs."""
    for step in steps:
        state = project.states[step.stage]
        check = project.specs[state.stage].check
        if step.action == "run" and check is not None:
            try:
                check(state.config)
            except ValueError as exc:
                raise ConfigError(f"stage `{step.stage}`: {exc}") from exc


def _claim(
    project: Project,
    members: Iterable[Step],
    options: Options,
    known: dict[tuple[str, str], InputPin | None],
    report: Report,
    claims: contextlib.ExitStack,
) -> list[Step]:
    """The wave's steps, each member to run claimed for this process by its fingerprint.

    Another process of this workspace (a second terminal) may be running the same
    fingerprint: we wait for it, say so, and then reuse what it made. The claims are
    file locks, so a killed process leaves nothing that blocks.
    """
    ready = [_ready(project, step, options, known) for step in members]
    running = sorted((s for s in ready if s.action == "run"), key=lambda s: s.fingerprint or "")
    for step in running:
        claim = FileLock(project.store.root / "locks" / f"{step.fingerprint}.lock")
        try:
            claim.acquire(timeout=0)
        except Timeout:
            report("wait", step)
            claim.acquire()
        claims.callback(claim.release)
    # What another process finished while we waited is now in the run cache.
    return [
        _ready(project, replace(step, fingerprint=None), options, known)
        if step.action == "run" and step.stage not in options.force
        else step
        for step in ready
    ]


def _ready(
    project: Project, step: Step, options: Options, known: dict[tuple[str, str], InputPin | None]
) -> Step:
    """Decide again once upstream outputs exist: an input rebuilt unchanged may make it fresh."""
    if step.action != "run" or step.fingerprint is not None:
        return step
    entry = project.lock.stages.get(step.stage)
    member = project.members[step.stage]
    return decide(member, project.states[step.stage], entry, project.store, options, known)


def _run_wave(project: Project, wave: Sequence[Step], group: str) -> list[Step]:
    """Launch the wave's members as one multirun; their steps with outputs filled in."""
    stage = project.states[wave[0].stage].stage
    spec, store = project.specs[stage], project.store
    types = {o.name: o.type for s in project.specs.values() for o in s.logs}
    jobs = []
    for step in wave:
        state = project.states[step.stage]
        inputs = {
            slot: ArtifactRef(
                pin.name,
                types[slot.split("@", 1)[0]],
                store.path(pin.name, pin.version),
                pin.version,
                pin.digest,
            )
            for slot, pin in step.inputs.items()
        }
        jobs.append(
            MemberJob(
                step.stage,
                step.fingerprint or "",
                state.config,
                state.code_digest,
                inputs,
                state.artifacts,
            )
        )
    stamp = f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{uuid.uuid4().hex[:6]}"
    overrides = [
        *project.launcher,
        *(f"hydra.callbacks.wandb.{k}={quote(v)}" for k, v in sorted(project.wandb.items())),
    ]
    task = WaveTask(project.workspace, stage, group, jobs)
    results = launch_wave(task, spec, project.workspace / "outputs" / stage / stamp, overrides)
    by_key = {r["key"]: r for r in results}
    return [
        replace(
            step,
            outputs={k: OutputPin(**v) for k, v in by_key[step.stage]["outputs"].items()},
            metrics=by_key[step.stage]["metrics"],
            environment=by_key[step.stage]["environment"],
        )
        for step in wave
    ]


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
    # Read again under a file lock: another process may have recorded other stages.
    with FileLock(project.store.root / "locks" / "lockfile.lock"):
        project.lock = lock.update(
            project.lock_path, step.stage, entry, lock_cache(project.workspace)
        )
