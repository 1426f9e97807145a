"""The experiments table (`pipeline runs`): the lock's stages and members, or every run.

Like ``dvc exp show`` or W&B's runs table: one row per stage block (or per run in the
store's index), with the config keys that set it apart, its metrics, the versions it
made and its W&B run.  Pure: rows come from the lock and the index's records.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pipeline.core.errors import UsageError, did_you_mean
from pipeline.core.lock import Lock
from pipeline.core.overrides import override_key, user_config
from pipeline.core.sweep import stage_of
from pipeline.spec import row_text


@dataclass(frozen=True)
class Row:
    """One stage block or run: what set it apart, what it measured, what it made."""

    key: str  # the lock key, `train[train.lr=0.01]`
    stage: str
    run: int | None  # the run in the store's index (None: not in this store's index)
    status: str
    config: Mapping[str, Any] = field(default_factory=dict)  # `train.lr` -> 0.01
    metrics: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()  # `model:v1`
    wandb: str | None = None  # `offline run w8ea8l6p`, `run abc123 (entity/project)`


def from_lock(lock: Lock, runs: Sequence[Mapping[str, Any]]) -> list[Row]:
    """A row per block of the lock, in the lock's order, with the run that made it."""
    made = {(r["stage"], r["fingerprint"]): r for r in runs if r["status"] == "ok"}
    rows = []
    for key, block in lock.stages.items():
        run = made.get((key, block.fingerprint))
        config = user_config(block.config, block.overrides)
        rows.append(
            Row(
                key=key,
                stage=stage_of(key),
                run=run["run"] if run else None,
                status="pinned",
                config=config,
                metrics=dict(block.metrics),
                outputs=tuple(f"{p.name}:{p.version}" for _, p in sorted(block.outputs.items())),
                wandb=_wandb(run),
            )
        )
    set_by = {key: {override_key(o) for o in block.overrides} for key, block in lock.stages.items()}
    # Upstream first: a block's depth is one more than its inputs' producers' (from the lock
    # alone, so a fresh clone lists them in pipeline order too); each stage's own block first.
    depth = _depths(lock)
    rows.sort(key=lambda r: (depth[r.key], r.stage, r.key != r.stage, r.key))
    return _apart(rows, set_by)


def _depths(lock: Lock) -> dict[str, int]:
    made_by: dict[str, str] = {}  # an output's digest, and its name (a stale input's version)
    for key, block in lock.stages.items():
        for pin in block.outputs.values():
            made_by[pin.digest] = key
            made_by.setdefault(f"name:{pin.name}", key)
    depth: dict[str, int] = {}

    def of(key: str, seen: frozenset[str] = frozenset()) -> int:
        if key not in depth:
            found = (
                made_by.get(p.digest) or made_by.get(f"name:{p.name}")
                for p in lock.stages[key].inputs.values()
            )
            ups = {u for u in found if u is not None and u != key and u not in seen}
            depth[key] = 1 + max((of(u, seen | {key}) for u in ups), default=-1)
        return depth[key]

    for key in lock.stages:
        of(key)
    return depth


def from_index(runs: Sequence[Mapping[str, Any]]) -> list[Row]:
    """A row per run in the store's index, oldest first, failed and running ones too."""
    rows = [
        Row(
            key=run["stage"],
            stage=stage_of(run["stage"]),
            run=run["run"],
            status=run["status"],
            config=user_config(run["config"]),
            metrics=dict(run["metrics"]),
            outputs=tuple(f"{p['name']}:{p['version']}" for _, p in sorted(run["outputs"].items())),
            wandb=_wandb(run),
        )
        for run in runs
    ]
    return _apart(rows, {})


def _apart(rows: list[Row], set_by: Mapping[str, set[str]]) -> list[Row]:
    """Each row's config cut to the keys that set it apart: those whose value differs
    between rows of the same stage, and those its block's overrides set."""
    values: dict[str, dict[str, set[str]]] = {}
    having: dict[str, dict[str, int]] = {}  # how many rows of the stage hold the key
    size: dict[str, int] = {}
    for row in rows:
        size[row.stage] = size.get(row.stage, 0) + 1
        for k, v in row.config.items():
            values.setdefault(row.stage, {}).setdefault(k, set()).add(json.dumps(v))
            having.setdefault(row.stage, {})[k] = having.get(row.stage, {}).get(k, 0) + 1
    # Per stage, once: a key that takes two values, or that some rows lack (another option).
    varies = {
        stage: {k for k, seen in seen_by.items() if len(seen) > 1 or having[stage][k] < size[stage]}
        for stage, seen_by in values.items()
    }
    kept = []
    for row in rows:
        varying = varies.get(row.stage, set())
        wanted = varying | set_by.get(row.key, set())
        # Keys under an option that differs follow from it (`model=mlp` brings `model.depth`),
        # but for a text one, which names a variant (`model.name=squeezenet1_0`).
        wanted = {
            k
            for k in wanted
            if isinstance(row.config.get(k), str) or not any(k.startswith(f"{o}.") for o in varying)
        }
        config = {f"{row.stage}.{k}": v for k, v in sorted(row.config.items()) if k in wanted}
        kept.append(replace(row, config=config))
    return kept


def _wandb(run: Mapping[str, Any] | None) -> str | None:
    tracked = (run or {}).get("wandb") or {}
    if not tracked.get("id"):
        return None
    if tracked.get("mode") == "offline" and not tracked.get("synced"):
        return f"offline {tracked['id']}"
    where = "/".join(p for p in (tracked.get("entity"), tracked.get("project")) if p)
    return f"{tracked['id']} ({where})" if where else str(tracked["id"])


def select(rows: Iterable[Row], stage: str | None) -> list[Row]:
    """The rows of one stage (its members too), or all rows."""
    rows = list(rows)
    if stage is None:
        return rows
    stage = stage.replace("-", "_")
    chosen = [r for r in rows if r.stage == stage]
    if not chosen:
        known = sorted({r.stage for r in rows})
        raise UsageError(
            f"no runs of stage `{stage}`{did_you_mean(stage, known)} (stages with runs: "
            f"{', '.join(known) or 'none'})"
        )
    return chosen


def sort(rows: Sequence[Row], metric: str | None, ascending: bool = False) -> list[Row]:
    """Rows with ``metric`` first, best first (highest, or lowest if ``ascending``)."""
    if metric is None:
        return list(rows)
    having = [r for r in rows if isinstance(r.metrics.get(metric), (int, float))]
    if not having:
        names = sorted({m for r in rows for m in r.metrics})
        raise UsageError(
            f"`--sort {metric}`: no row has that metric{did_you_mean(metric, names)} "
            f"(metrics: {', '.join(names) or 'none'})"
        )
    having.sort(key=lambda r: float(r.metrics[metric]), reverse=not ascending)
    return having + [r for r in rows if r not in having]


def text(rows: Sequence[Row]) -> str:
    """An aligned table: key, run, outputs, what set it apart, metrics, W&B run."""
    if not rows:
        return "no runs yet: `python -m pipeline run` makes the first\n"
    table = [("key", "run", "outputs", "config", "metrics", "wandb")]
    for row in rows:
        config = " ".join(f"{k}={_value(v)}" for k, v in row.config.items())
        run = f"#{row.run}" if row.run is not None else "-"
        if row.status not in ("ok", "pinned"):
            run += f" ({row.status})"
        shown = (row.key, run, " ".join(row.outputs), config, row_text(row.metrics))
        table.append((*shown, row.wandb or "-"))
    width = [max(len(line[i]) for line in table) for i in range(5)]
    return "".join(
        "  ".join(cell.ljust(width[i]) for i, cell in enumerate(line[:5])) + f"  {line[5]}\n"
        for line in table
    )


def as_json(rows: Sequence[Row]) -> str:
    """``{"runs": [...]}``: each row whole, keys sorted."""
    doc = {"runs": [{**asdict(r), "outputs": list(r.outputs)} for r in rows]}
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def as_csv(rows: Sequence[Row]) -> str:
    """One column per config key and per metric, for a spreadsheet or pandas."""
    keys = sorted({k for r in rows for k in r.config})
    metrics = sorted({m for r in rows for m in r.metrics})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["key", "stage", "run", "status", "outputs", *keys, *metrics, "wandb"])
    for r in rows:
        writer.writerow(
            [r.key, r.stage, r.run if r.run is not None else "", r.status, " ".join(r.outputs)]
            + [_value(r.config[k]) if k in r.config else "" for k in keys]
            + [r.metrics.get(m, "") for m in metrics]
            + [r.wandb or ""]
        )
    return out.getvalue()


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
