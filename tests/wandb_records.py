"""A reader of W&B's offline `.wandb` files, for tests that check lineage (format:
`pipeline.execution.wandb_file`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.execution.wandb_file import payloads


@dataclass
class RunRecords:
    """What one offline run file says: its run, its artifact uses and logs, its exit."""

    path: Path
    run_id: str = ""
    job_type: str = ""
    group: str = ""
    name: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    uses: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)  # the last value of each key
    steps: list[dict[str, Any]] = field(default_factory=list)  # every row `run.log` made


def _key(item: Any) -> str:
    # Keys with a slash ("plots/confusion_matrix") are stored as a nested key.
    return str(item.key) or "/".join(item.nested_key)


def read_run(path: Path) -> RunRecords:
    """Parse one `run-<id>.wandb` file."""
    from wandb.proto import wandb_internal_pb2

    out = RunRecords(path)
    for payload in payloads(path.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out.run_id, out.job_type, out.group = run.run_id, run.job_type, run.run_group
            out.name = run.display_name
            # `_wandb` is W&B's own bookkeeping, not the run's config.
            items = run.config.update
            out.config = {i.key: json.loads(i.value_json) for i in items if i.key != "_wandb"}
        elif kind == "artifact":
            art = record.artifact
            entry = {
                "name": art.name,
                "type": art.type,
                "digest": art.digest,
                "metadata": json.loads(art.metadata or "{}"),
                "paths": sorted(c.path for c in art.manifest.contents),
            }
            (out.uses if art.use_after_commit else out.logs).append(entry)
        elif kind == "exit":
            out.exit_code = record.exit.exit_code
        elif kind == "summary":
            out.summary.update({_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "history":
            row = {_key(i): json.loads(i.value_json) for i in record.history.item}
            out.history.update(row)
            out.steps.append({k: v for k, v in row.items() if not k.startswith("_")})
    return out


def read_all(wandb_dir: Path) -> list[RunRecords]:
    """Every offline run under a `wandb/` folder, in the order they started."""
    files = sorted(wandb_dir.glob("offline-run-*/run-*.wandb"))
    return [read_run(f) for f in files]
