"""Sweeps: each stage's members, from the swept values, with fan-in stages gathering them."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.core.graph import Dag, order, producers

# ((full key "train.lr", values), ...), sorted by key; a fan-in member holds several values.
Assign = tuple[tuple[str, tuple[str, ...]], ...]
DEFAULT_LABEL = "default"


@dataclass(frozen=True)
class Member:
    """One instance of a stage: its swept values and the members that feed it."""

    stage: str
    assign: Assign = ()
    inputs: tuple[tuple[str, str, str], ...] = ()  # (slot, producer member key, artifact)
    own: tuple[str, ...] = ()  # overrides of the stage's own config, e.g. "lr=0.001"
    logs: tuple[str, ...] = ()
    only_for: str = ""  # made for one consumer's routed input (see `expand`), else ""

    @property
    def key(self) -> str:
        """The lock key: the stage, plus its swept values (``train[train.lr=0.01]``)."""
        return f"{self.stage}[{self.label}]" if self.assign else self.stage

    @property
    def label(self) -> str:
        """The swept values alone (``train.lr=0.01``), or ``default`` outside a sweep."""
        return ",".join(f"{k}={'|'.join(v)}" for k, v in self.assign) or DEFAULT_LABEL


def _merge(*assigns: Assign) -> Assign:
    merged: dict[str, set[str]] = {}
    for assign in assigns:
        for key, values in assign:
            merged.setdefault(key, set()).update(values)
    return tuple((k, tuple(sorted(v))) for k, v in sorted(merged.items()))


def _consistent(members: Sequence[Member]) -> bool:
    """Members agree on every swept key they share (a model pairs with its own dataset)."""
    seen: dict[str, tuple[str, ...]] = {}
    for member in members:
        for key, values in member.assign:
            if seen.setdefault(key, values) != values:
                return False
    return True


def expand(
    graph: Dag,
    targets: Sequence[str],
    sweep: Mapping[str, Sequence[tuple[str, Sequence[str]]]] | None = None,
    fan_in: Mapping[str, Sequence[str]] | None = None,
) -> list[Member]:
    """Every member of the targets and their ancestors, in a deterministic topological order.

    ``sweep`` maps a stage to its swept keys and values (``{"train": [("lr", ["0.1",
    "0.01"])]}``); a stage has one member per combination of its own values and of its
    upstream members.  An input in ``fan_in`` gathers all members of its producer.

    A swept key that names one of the stage's inputs routes it: ``evaluate.dataset=a,b``
    evaluates the same models on the dataset made with ``prepare_data.dataset=a`` and
    with ``=b``; those producer members serve that input of that stage only.
    """
    made_by = producers(graph)
    swept, routes = _split_routes(graph, sweep or {})
    found: dict[str, list[Member]] = {}
    members: list[Member] = []
    for stage in order(graph, targets):
        gathers = set((fan_in or {}).get(stage, ()))
        direct = [a for a in graph.nodes[stage]["uses"] if a not in gathers]
        varied = [(k, v) for k, v in swept.get(stage, ()) if len(v) > 1]
        # A key given one value applies to every member and does not name them, unless
        # nothing else does: then it keeps the member apart from the stage's own block.
        fixed = _own_combinations(stage, [(k, v) for k, v in swept.get(stage, ()) if len(v) == 1])
        own = _own_combinations(stage, varied)
        found[stage] = []
        feeds_of = {a: _feeds(found[made_by[a]], stage, a in routes.get(stage, {})) for a in direct}
        for combo in itertools.product(*(feeds_of[a] for a in direct)):
            if not _consistent(combo):
                continue
            inherited = _merge(*(m.assign for m in combo))
            inputs = [(a, m.key, a) for a, m in zip(direct, combo, strict=True)]
            gathered: list[Member] = []
            for artifact in sorted(gathers):
                feeds = [m for m in found[made_by[artifact]] if _consistent([*combo, m])]
                gathered += feeds
                inputs += [(_slot(artifact, m), m.key, artifact) for m in feeds]
            for assign in own:
                named = _merge(inherited, *(m.assign for m in gathered), assign) or fixed[0]
                member = Member(
                    stage,
                    named,
                    tuple(inputs),
                    tuple(f"{k.split('.', 1)[1]}={v[0]}" for k, v in sorted((*assign, *fixed[0]))),
                    tuple(graph.nodes[stage]["logs"]),
                )
                found[stage].append(member)
                members.append(member)
        for consumer, artifact, values in _routes_into(routes, made_by, stage):
            for base in [m for m in found[stage] if not m.only_for]:
                for value in values:
                    routed = Member(
                        stage,
                        _merge(base.assign, ((f"{consumer}.{artifact}", (value,)),)),
                        base.inputs,
                        (*base.own, f"{artifact}={value}"),
                        base.logs,
                        only_for=consumer,
                    )
                    found[stage].append(routed)
                    members.append(routed)
    return members


def _split_routes(
    graph: Dag, sweep: Mapping[str, Sequence[tuple[str, Sequence[str]]]]
) -> tuple[dict[str, list[tuple[str, Sequence[str]]]], dict[str, dict[str, Sequence[str]]]]:
    """Swept config keys, and swept keys that name an input (routes), per stage."""
    swept: dict[str, list[tuple[str, Sequence[str]]]] = {}
    routes: dict[str, dict[str, Sequence[str]]] = {}
    for stage, items in sweep.items():
        for key, values in items:
            if key in graph.nodes[stage]["uses"]:
                routes.setdefault(stage, {})[key] = values
            else:
                swept.setdefault(stage, []).append((key, values))
    return swept, routes


def _routes_into(
    routes: Mapping[str, Mapping[str, Sequence[str]]], made_by: Mapping[str, str], stage: str
) -> list[tuple[str, str, Sequence[str]]]:
    """(consumer, artifact, values) for each routed input this stage produces."""
    return [
        (consumer, artifact, values)
        for consumer, routed in sorted(routes.items())
        for artifact, values in sorted(routed.items())
        if made_by[artifact] == stage
    ]


def _feeds(made: Sequence[Member], consumer: str, routed: bool) -> list[Member]:
    """The producer members an input may take: routed ones for a routed input only."""
    if routed:
        return [m for m in made if m.only_for == consumer]
    return [m for m in made if not m.only_for]


def _own_combinations(stage: str, swept: Sequence[tuple[str, Sequence[str]]]) -> list[Assign]:
    """One assignment per combination of a stage's own swept values (one, empty, if none)."""
    keys = [f"{stage}.{key}" for key, _ in swept]
    return [
        tuple(sorted((k, (v,)) for k, v in zip(keys, combo, strict=True)))
        for combo in itertools.product(*(values for _, values in swept))
    ]


def _slot(artifact: str, member: Member) -> str:
    return artifact if not member.assign else f"{artifact}@{member.label}"


def stage_of(key: str) -> str:
    """The stage of a member key or lock block: ``train[train.lr=0.01]`` -> ``train``."""
    return key.split("[", 1)[0]


def slot_label(slot: str) -> str:
    """The member label a fan-in slot carries (``evaluation@x=1`` -> ``x=1``)."""
    return slot.split("@", 1)[1] if "@" in slot else DEFAULT_LABEL
