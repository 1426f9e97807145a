"""Sweep member labels (``train.lr=0.01,train.model=cnn``): what all share, what differs.

The orchestrator names each fan-in member by its swept values joined with commas, or
``default`` outside a sweep. A value may hold commas itself (``channels=[8,16]``,
``name='a,b'``), so a label is split only at commas outside brackets and quotes that start
a new ``key=``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT = "default"
_KEY = re.compile(r"[A-Za-z_+~][\w.@/+-]*")
_OPEN, _CLOSE = "([{", ")]}"
#: Keys whose last part names a rate: swept on a log scale, so drawn on one.
_RATES = {"lr", "learning_rate", "weight_decay", "wd", "eps", "momentum_decay"}


def parse(label: str) -> tuple[tuple[str, str], ...]:
    """The ``(key, value)`` pairs of a label, in its order; ``default`` has none.

    A label that is no ``key=value`` list is one pair with an empty key.
    """
    if label == DEFAULT:
        return ()
    pairs: list[list[str]] = []
    for piece in _split(label):
        key, sep, value = piece.partition("=")
        if sep and _KEY.fullmatch(key):
            pairs.append([key, value])
        elif pairs:  # a comma inside a value we could not see as nested
            pairs[-1][1] += "," + piece
        else:
            return (("", label),)
    return tuple((k, v) for k, v in pairs)


def _split(label: str) -> list[str]:
    pieces, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(label):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            pieces.append(label[start:i])
            start = i + 1
    return [*pieces, label[start:]]


def text(pairs: Sequence[tuple[str, str]]) -> str:
    """Pairs as a reader sees them: ``train.lr=0.01, train.model=cnn``."""
    return ", ".join(f"{k}={v}" if k else v for k, v in pairs)


@dataclass(frozen=True)
class Members:
    """The members of a fan-in: shared values, the keys that differ, and short names."""

    common: tuple[tuple[str, str], ...]
    varying: tuple[str, ...]
    values: dict[str, dict[str, str]]  # label -> its value of each varying key it has
    short: dict[str, str]  # label -> its varying values as text

    def numeric(self, key: str) -> dict[str, float] | None:
        """Each member's value of ``key`` as a number, or None if one is not a number."""
        found = {label: _number(v.get(key, "")) for label, v in self.values.items()}
        if any(x is None for x in found.values()):
            return None
        return {label: x for label, x in found.items() if x is not None}

    def log_scale(self, key: str) -> bool:
        """Rates and values spanning two orders of magnitude read best on a log axis."""
        numbers = list((self.numeric(key) or {}).values())
        if not numbers or min(numbers) <= 0:
            return False
        return key.rsplit(".", 1)[-1] in _RATES or max(numbers) / min(numbers) >= 100


def describe(labels: Sequence[str]) -> Members:
    """Split the labels into what every member shares and what tells them apart."""
    parsed = {label: dict(parse(label)) for label in labels}
    keys = list(dict.fromkeys(k for pairs in parsed.values() for k in pairs))
    first = next(iter(parsed.values()), {})
    common = tuple(
        (k, first[k])
        for k in keys
        if k in first and all(pairs.get(k) == first[k] for pairs in parsed.values())
    )
    shared = {k for k, _ in common}
    varying = tuple(k for k in keys if k not in shared)
    values = {label: {k: p[k] for k in varying if k in p} for label, p in parsed.items()}
    short = {label: text(list(v.items())) or label for label, v in values.items()}
    if len(labels) == 1:
        short = {label: text(common) or label for label in labels}
    return Members(common, varying, values, short)


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
