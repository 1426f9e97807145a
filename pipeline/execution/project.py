"""A workspace opened: its stages, their DAG, the lock, the store, each member's config.

The declarations cache (`pipeline.state.declared`) answers where it can, so that `status` and a
no-op `run` need neither Hydra nor the stages' imports; nothing here imports Hydra at
module level (`pipeline.execution.callback` is asked only on the full path).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core import graph, lockfile
from pipeline.core.digest import code_files
from pipeline.core.errors import ConfigError, UsageError
from pipeline.core.lock import Lock
from pipeline.core.overrides import merge as merge_overrides
from pipeline.core.overrides import override_key, split_overrides
from pipeline.core.paths import LOCK_NAME, lock_cache
from pipeline.core.plan import Options, StageState, Step, plan
from pipeline.core.sweep import Member, expand
from pipeline.execution import compose, hydra_store
from pipeline.spec import StageSpec
from pipeline.state import declared, memo
from pipeline.state.declared import Declared
from pipeline.state.store import Store

if TYPE_CHECKING:  # networkx is imported by the commands that draw graphs
    import networkx as nx


@dataclass
class Project:
    """A workspace with its stages, their current state, its lock and its store."""

    workspace: Path
    specs: Mapping[str, StageSpec | Declared]  # declarations only, when from the cache
    graph: graph.Dag
    lock: Lock
    store: Store
    states: dict[str, StageState]  # by member key: the stage's name outside a sweep
    members: dict[str, Member]
    wandb: dict[str, str] = field(default_factory=dict)  # W&B callback options
    # The caches this opening would write (the parsed lock, the declarations): written by
    # `record`, which the command calls once it has succeeded, so that bad input writes nothing.
    pending: list[Callable[[], object]] = field(default_factory=list)

    def record(self) -> None:
        """Write the caches this opening filled (see ``pending``)."""
        for write in self.pending:
            write()
        self.pending.clear()

    launcher: list[str] = field(default_factory=list)  # Hydra overrides: hydra/launcher=...
    # The stages' configs in Hydra's store, from opening to `close` (see `hydra_store`).
    hydra: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

    def close(self) -> None:
        """Take the stages' configs and the callback out of Hydra's store again.

        They are put there once, when the project is opened in full, and stay while its
        waves launch: a config class registered again after a parallel launcher's worker
        sent it back (cloudpickle resets a dynamic class's fields) would be refused.
        """
        self.hydra.close()

    @property
    def declared_only(self) -> bool:
        """Whether the stages came from the declarations cache (enough to plan, not to run)."""
        return not all(isinstance(spec, StageSpec) for spec in self.specs.values())

    def spec(self, name: str) -> StageSpec:
        """A stage's full spec (the project must not be :attr:`declared_only`)."""
        spec = self.specs[name]
        if not isinstance(spec, StageSpec):
            raise RuntimeError(f"stage `{name}` is only declared; open the project in full")
        return spec

    def check(self, steps: Iterable[Step]) -> None:
        """Each stage's own check of its config (`StageSpec.check`), for every member to run.

        Called before anything runs, by `run` and by `run --dry-run` alike.
        """
        for step in steps:
            state = self.states[step.stage]
            check = self.spec(state.stage).check
            if step.action == "run" and check is not None:
                try:
                    check(state.config)
                except ValueError as exc:
                    raise ConfigError(f"stage `{step.stage}`: {exc}") from exc

    @property
    def lock_path(self) -> Path:
        """Where the lock lives."""
        return self.workspace / LOCK_NAME

    def plan(self, targets: Sequence[str], options: Options | None = None) -> list[Step]:
        """The plan for these targets against the lock and the store."""
        members = list(self.members.values())
        return plan(
            self.graph, targets, self.states, self.lock, self.store, options or Options(), members
        )

    def watched(self, steps: Iterable[Step]) -> list[Path]:
        """Every file a fresh plan depends on (`pipeline.state.memo.dependencies`)."""
        sources = [self.lock_path]
        code = {state.stage: state.code for state in self.states.values()}
        for name, spec in self.specs.items():
            root = code_root(spec)
            # Every module of the stages' package (its list of stages too), and what a
            # stage imports from elsewhere.
            sources += (root / spec.module.split(".")[0]).rglob("*.py")
            sources += (root / rel for rel in code[name])
        folders = [self.store.path(p.name, p.version) for s in steps for p in s.outputs.values()]
        return memo.dependencies(self.store.root, sources, folders)

    def member_graph(self) -> nx.DiGraph:
        """Members and the artifacts between them, as the stage graph is for stages."""
        members = self.members.values()
        return graph.linked(
            (graph.Node(m.key, (), m.logs) for m in members),
            ((made_by, m.key, artifact) for m in members for _, made_by, artifact in m.inputs),
        )


def load(
    workspace: Path,
    specs: Iterable[StageSpec | Declared],
    overrides: Mapping[str, Sequence[str]] | None = None,
    reset: Iterable[str] = (),
    sweep: Mapping[str, Sequence[tuple[str, Sequence[str]]]] | None = None,
    caches: declared.Declarations | None = None,
) -> Project:
    """Validate the DAG, read the lock, and compose every member's config with its overrides.

    A stage's config is the code's defaults, plus the overrides its lock block recorded
    (unless ``reset``), plus new ``overrides``, plus a sweep member's own values.
    ``caches`` is what the declarations cache holds: networkx's DAG, composed configs and
    the code's imports; with declarations only (no full specs), every config must come
    from it (else :class:`CacheMiss`). What is computed here is added to it.
    """
    specs_by_name = {s.name: s for s in specs}
    caches = caches or declared.Declarations.empty()
    nodes = [
        graph.Node(s.name, s.uses, tuple(o.name for o in s.logs)) for s in specs_by_name.values()
    ]
    if caches.dag is None or caches.dag.nodes != {
        n.name: {"uses": n.uses, "logs": n.logs} for n in nodes
    }:
        caches.dag = graph.build(nodes)
    dag = caches.dag
    current, keep_lock = lockfile.read_later(workspace / LOCK_NAME, lock_cache(workspace))
    full = [spec for spec in specs_by_name.values() if isinstance(spec, StageSpec)]
    fan_in = {name: spec.fan_in for name, spec in specs_by_name.items()}
    members = {m.key: m for m in expand(dag, list(dag), sweep, fan_in)}
    code = {
        name: code_files(code_root(spec), [spec.module], caches.imports)
        for name, spec in specs_by_name.items()
    }
    merged, from_lock = {}, {}
    for key, member in members.items():
        entry = current.stages.get(member.stage)
        recorded = () if member.stage in set(reset) or entry is None else entry.overrides
        new = [*(overrides or {}).get(member.stage, ()), *member.own]
        merged[key] = merge_overrides(recorded, new)
        from_lock[member.stage] = {override_key(o) for o in recorded} - {
            override_key(o) for o in new
        }
    states = {}
    hydra = contextlib.ExitStack()
    if len(full) == len(specs_by_name):  # else every config must come from the cache
        hydra.enter_context(hydra_store.registered(full))
    try:
        for name, spec in specs_by_name.items():
            keys = [k for k, m in members.items() if m.stage == name]
            states.update(_states(spec, keys, merged, code[name], caches, from_lock))
        store = Store(workspace)
    except BaseException:
        hydra.close()
        raise
    project = Project(workspace, specs_by_name, dag, current, store, states, members, hydra=hydra)
    project.pending.append(keep_lock)
    return project


def _states(
    spec: StageSpec | Declared,
    keys: Sequence[str],
    merged: Mapping[str, tuple[str, ...]],
    code: Mapping[str, str],
    caches: declared.Declarations,
    from_lock: Mapping[str, set[str]],
) -> dict[str, StageState]:
    """Each member's state: its config composed with its merged overrides."""
    name = spec.name
    try:
        composed_all = compose.compose_all(spec, [merged[k] for k in keys], caches.configs)
    except ConfigError as exc:
        if not any(f"`{name}.{k}" in str(exc) for k in from_lock.get(name, ())):
            raise
        raise ConfigError(
            f"{exc}; the lock's `{name}` block recorded it: drop what it recorded with "
            f"`python -m pipeline run {name} --reset {name}`"
        ) from exc
    return {
        key: StageState(
            config=composed.config,
            overrides=merged[key],
            code=code,
            artifacts={o.name: o.artifact_name(composed.choices) for o in spec.logs},
            stage=name,
        )
        for key, composed in zip(keys, composed_all, strict=True)
    }


def open_project(
    workspace: Path,
    argv_overrides: Sequence[str] = (),
    reset: Sequence[str] = (),
    multirun: bool = False,
    since_ns: int | None = None,
    declarations: bool = True,
) -> tuple[Project, dict[str, list[str]]]:
    """The project of the stages (`discover.stage_specs`) in a workspace, with overrides applied.

    With ``multirun`` the overrides define a sweep's members and stick to nothing. Given
    ``since_ns`` (when the command started), the declarations cache (`pipeline.state.declared`)
    is asked first, unless ``declarations`` is false (stages are about to run); the project
    is then :attr:`Project.declared_only` where it could answer. The full path adds what it
    composed to the cache, recorded by :attr:`Project.record` when the command succeeds.
    """
    known = declared.recall(workspace) if since_ns is not None else None
    if known is not None and declarations:
        with contextlib.suppress(compose.CacheMiss):
            return _open(workspace, known.stages, argv_overrides, reset, multirun, known)
    from pipeline.execution.discover import stage_specs

    specs = stage_specs()
    caches = known or declared.Declarations.empty()
    project, overrides = _open(workspace, specs, argv_overrides, reset, multirun, caches)
    if since_ns is not None:
        project.pending.append(
            functools.partial(declared.remember, workspace, specs, caches, since_ns)
        )
    return project, overrides


def _open(
    workspace: Path,
    specs: Sequence[StageSpec | Declared],
    argv_overrides: Sequence[str],
    reset: Sequence[str],
    multirun: bool,
    caches: declared.Declarations,
) -> tuple[Project, dict[str, list[str]]]:
    names = [s.name for s in specs]
    overrides = split_overrides(argv_overrides, names)
    for name in reset:
        if name.replace("-", "_") not in names:
            raise UsageError(f"`--reset {name}`: no such stage; stages are {', '.join(names)}")
    resets = [r.replace("-", "_") for r in reset]
    if not multirun:
        return load(workspace, specs, overrides, resets, None, caches), overrides
    sweep = {stage: compose.sweep_values(stage, ovs) for stage, ovs in overrides.items()}
    return load(workspace, specs, None, resets, sweep, caches), overrides


def code_root(spec: StageSpec | Declared) -> Path:
    """The folder holding the stage's top-level package, so code paths read `stages/x.py`."""
    root = declared.source_root(spec.module)
    if root is None:
        raise UsageError(f"cannot locate the source of stage `{spec.name}` ({spec.module})")
    return root
