"""Sweeps: each stage's members, from the swept values, with fan-in stages gathering them."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import networkx as nx

from pipeline.graph import order, producers

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
    graph: nx.DiGraph,
    targets: Sequence[str],
    sweep: Mapping[str, Sequence[tuple[str, Sequence[str]]]] | None = None,
    fan_in: Mapping[str, Sequence[str]] | None = None,
) -> list[Member]:
    """Every member of the targets and their ancestors, in a deterministic topological order.

    ``sweep`` maps a stage to its swept keys and values (``{"train": [("lr", ["0.1",
    "0.01"])]}``); a stage has one member per combination of its own values and of its
    upstream members.  An input in ``fan_in`` gathers all members of its producer.
    """
    made_by = producers(graph)
    found: dict[str, list[Member]] = {}
    members: list[Member] = []
    for stage in order(graph, targets):
        gathers = set((fan_in or {}).get(stage, ()))
        direct = [a for a in graph.nodes[stage]["uses"] if a not in gathers]
        own = _own_combinations(stage, (sweep or {}).get(stage, ()))
        found[stage] = []
        for combo in itertools.product(*(found[made_by[a]] for a in direct)):
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
                member = Member(
                    stage,
                    _merge(inherited, *(m.assign for m in gathered), assign),
                    tuple(inputs),
                    tuple(f"{k.split('.', 1)[1]}={v[0]}" for k, v in assign),
                    tuple(graph.nodes[stage]["logs"]),
                )
                found[stage].append(member)
                members.append(member)
    return members


def _own_combinations(stage: str, swept: Sequence[tuple[str, Sequence[str]]]) -> list[Assign]:
    """One assignment per combination of a stage's own swept values (one, empty, if none)."""
    keys = [f"{stage}.{key}" for key, _ in swept]
    return [
        tuple(sorted((k, (v,)) for k, v in zip(keys, combo, strict=True)))
        for combo in itertools.product(*(values for _, values in swept))
    ]


def _slot(artifact: str, member: Member) -> str:
    return artifact if not member.assign else f"{artifact}@{member.label}"


def slot_label(slot: str) -> str:
    """The member label a fan-in slot carries (``evaluation@x=1`` -> ``x=1``)."""
    return slot.split("@", 1)[1] if "@" in slot else DEFAULT_LABEL
