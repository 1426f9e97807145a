"""The plan: which stages run, reuse or are pinned, and why, decided without side effects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from pipeline.core import digest
from pipeline.core.errors import StoreError, UsageError
from pipeline.core.graph import Dag, order
from pipeline.core.lock import (
    NOT_HERE,
    CachedRun,
    InputPin,
    Lock,
    OutputPin,
    StageLock,
)
from pipeline.core.overrides import config_changes, user_config
from pipeline.core.sweep import Member, expand

Action = Literal["run", "reuse", "pin"]


@dataclass(frozen=True)
class StageState:
    """What a stage is now: its resolved config, overrides, code, and output names."""

    config: Mapping[str, Any]
    overrides: tuple[str, ...]
    code: Mapping[str, str]
    artifacts: Mapping[str, str]  # logical output name -> stored artifact name
    stage: str = ""  # the stage this is a member of

    @property
    def code_digest(self) -> str:
        """Digest of the stage's code files."""
        return digest.code_digest(self.code)


class Index(Protocol):
    """The read-only questions the plan asks the store."""

    def cached(self, fingerprint: str) -> CachedRun | None:
        """The last successful run with this fingerprint, if any."""

    def damage(self, pin: OutputPin) -> str | None:
        """What is wrong with this artifact version's files, ``None`` if they are intact."""

    def resolve(self, name: str, ref: str) -> InputPin | None:
        """An artifact version by name and version or alias (``v3``, ``latest``)."""


@dataclass(frozen=True)
class Options:
    """How the user asked to run: forced stages, ``--only``, ``--use`` pins."""

    force: Set[str] = frozenset()
    only: bool = False
    frozen: bool = False  # rerun and demand the lock's fingerprints and digests
    use: Mapping[str, str] = field(default_factory=dict)  # artifact name -> version/alias


@dataclass(frozen=True)
class Step:
    """One stage in the plan, with the action to take and the reasons for it."""

    stage: str
    action: Action
    reasons: tuple[str, ...]
    fingerprint: str | None = None
    inputs: Mapping[str, InputPin] = field(default_factory=dict)
    outputs: Mapping[str, OutputPin] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    #: A run whose only reason is an input rebuilt first: decided again once that input
    #: exists, when an input rebuilt unchanged makes it fresh.
    decided_later: bool = False

    @property
    def state(self) -> str:
        """``fresh``, ``stale`` or ``never-ran``, as ``status`` reports it."""
        if self.action == "pin" or (self.action == "reuse" and not self.reasons):
            return "fresh"
        return "never-ran" if "never ran" in self.reasons else "stale"


def plan(
    graph: Dag,
    targets: Sequence[str],
    stages: Mapping[str, StageState],
    lock: Lock,
    index: Index,
    options: Options = Options(),
    members: Sequence[Member] | None = None,
) -> list[Step]:
    """Steps for ``targets`` and their ancestors, in a deterministic topological order.

    Without ``members`` each stage is one member keyed by its name; a sweep passes
    its expanded members (see :func:`pipeline.core.sweep.expand`), keyed as in the lock.
    """
    wanted = set(order(graph, targets))
    todo = [m for m in (members or expand(graph, targets)) if m.stage in wanted]
    known: dict[tuple[str, str], InputPin | None] = {}
    steps: list[Step] = []
    for member in todo:
        step = _pinned(member, lock, index, options, targets)
        if step is None:
            step = decide(
                member, stages[member.key], lock.stages.get(member.key), index, options, known
            )
        if step.action == "run" and step.fingerprint is None and "never ran" not in step.reasons:
            rebuilt = [
                (slot, made_by)
                for slot, made_by, artifact in member.inputs
                if known.get((made_by, artifact)) is None
            ]
            extra = [f"input {slot} is rebuilt by `{made_by}` first" for slot, made_by in rebuilt]
            step = replace(step, reasons=(*extra, *step.reasons), decided_later=not step.reasons)
        steps.append(step)
        for artifact in member.logs:
            pin = step.outputs.get(artifact)
            known[(member.key, artifact)] = _as_input(pin) if pin else None
    return steps


def _as_input(pin: OutputPin) -> InputPin:
    return InputPin(pin.name, pin.version, pin.digest)


def _pinned(
    member: Member, lock: Lock, index: Index, options: Options, targets: Sequence[str]
) -> Step | None:
    """A ``pin`` step when ``--only`` or ``--use`` supplies this member's outputs."""
    name, entry = member.key, lock.stages.get(member.key)
    if options.only and member.stage not in targets:
        if entry is None:
            raise UsageError(
                f"`--only` needs the outputs of `{name}` pinned in the lock, and it has none; "
                f"run `python -m pipeline run {member.stage}` first"
            )
        for output in entry.outputs.values():
            _check_pin(index, output, member.stage, "`--only` uses")
        return Step(
            name, "pin", ("by the lock, for --only",), entry.fingerprint, outputs=entry.outputs
        )
    used = {a: options.use[a] for a in member.logs if a in options.use}
    if not used:
        return None
    if len(used) < len(member.logs):
        missing = ", ".join(sorted(set(member.logs) - set(used)))
        raise UsageError(f"`--use` pins only part of `{name}`'s outputs; pin {missing} too")
    outputs = {}
    for artifact, ref in used.items():
        current = entry.outputs[artifact].name if entry and artifact in entry.outputs else artifact
        pin = index.resolve(current, ref)
        if pin is None:
            raise UsageError(
                f"`--use {artifact}:{ref}`: the store has no version `{ref}` of `{current}`; "
                "`python -m pipeline status` lists the versions in the lock"
            )
        outputs[artifact] = OutputPin(pin.name, "", pin.version, pin.digest, 0, 0)
        _check_pin(index, outputs[artifact], member.stage, f"`--use {artifact}:{ref}` pins")
    reasons = tuple(f"by --use {a}:{r}" for a, r in sorted(used.items()))
    return Step(name, "pin", reasons, None, outputs=outputs)


def _check_pin(index: Index, pin: OutputPin, stage: str, what: str) -> None:
    """Stop before anything runs when a pinned input is absent or damaged in the store."""
    problem = index.damage(pin)
    if problem == NOT_HERE:
        raise StoreError(
            f"{what} `{pin.name}` {pin.version}, which this store does not have: fetch it with "
            f"`python -m pipeline pull {stage}`, or make it with `python -m pipeline run {stage}`"
        )
    if problem is not None:
        raise StoreError(
            f"{what} `{pin.name}` {pin.version}, which is not intact in the store ({problem}); "
            f"rebuild it with `python -m pipeline run --force {stage}`"
        )


def decide(
    member: Member,
    state: StageState,
    entry: StageLock | None,
    index: Index,
    options: Options,
    known: Mapping[tuple[str, str], InputPin | None],
) -> Step:
    """The step for one member, given what is known of its inputs (``None``: not built yet)."""
    name = member.key
    pins = {
        slot: pin
        for slot, made_by, artifact in member.inputs
        if (pin := known.get((made_by, artifact))) is not None
    }
    reasons = staleness(member.stage, state, entry, pins)
    if len(pins) < len(member.inputs):
        return Step(name, "run", ("forced", *reasons) if member.stage in options.force else reasons)
    fp = digest.fingerprint(
        member.stage, state.code_digest, state.config, {a: p.digest for a, p in pins.items()}
    )
    if member.stage in options.force:
        return Step(name, "run", ("forced", *reasons), fp, pins)
    if entry is not None and entry.fingerprint == fp:
        missing = [
            _unusable(p, problem)
            for p in entry.outputs.values()
            if (problem := index.damage(p)) is not None
        ]
        if not missing:
            kept = (entry.outputs, entry.metrics, entry.environment)
            return Step(name, "reuse", (), fp, pins, *kept)
        return Step(name, "run", tuple(missing), fp, pins)
    cached = index.cached(fp)
    if cached is not None and all(index.damage(p) is None for p in cached.outputs.values()):
        reasons = (*reasons, "same fingerprint ran before: outputs restored from the store")
        kept = (cached.outputs, cached.metrics, cached.environment)
        return Step(name, "reuse", reasons, fp, pins, *kept)
    return Step(name, "run", reasons or ("fingerprint changed",), fp, pins)


def staleness(
    name: str, state: StageState, entry: StageLock | None, inputs: Mapping[str, InputPin]
) -> tuple[str, ...]:
    """Every difference between the stage now and its lock block, in words."""
    if entry is None:
        return ("never ran",)
    reasons = [
        f"code changed: {path}"
        for path in sorted(set(state.code) | set(entry.code))
        if state.code.get(path) != entry.code.get(path)
    ]
    old = user_config(entry.config, entry.overrides)
    new = user_config(state.config, state.overrides)
    reasons += [
        f"config changed: {name}.{key} {_show(was)} -> {_show(now)}"
        for key, was, now in config_changes(old, new, _UNSET)
    ]
    for artifact, pin in sorted(inputs.items()):
        before = entry.inputs.get(artifact)
        if before is None:
            reasons.append(f"input {artifact} added: {pin.name}:{pin.version}")
        elif before.digest != pin.digest:
            same = before.name == pin.name
            was = before.version if same else f"{before.name}:{before.version}"
            now = pin.version if same else f"{pin.name}:{pin.version}"
            reasons.append(f"input {artifact} changed: {was} -> {now}")
    return tuple(reasons)


_UNSET = object()


def _unusable(pin: OutputPin, problem: str) -> str:
    if problem == NOT_HERE:
        return (
            f"output {pin.name} {pin.version} is not in this store (`python -m pipeline pull` "
            "fetches what the lock pins; `run` makes it here)"
        )
    return f"output {pin.name} {pin.version} is not intact ({problem})"


def _show(value: Any) -> str:
    if value is _UNSET:
        return "(unset)"
    return "null" if value is None else str(value)
