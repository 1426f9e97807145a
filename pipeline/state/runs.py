"""The index of stage runs: what each run used, made, ran with, and where W&B recorded it."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from pipeline.core.lock import CachedRun, InputPin, OutputPin


class RunIndex:
    """Stage runs in the store's SQLite index (the `runs` table), oldest first."""

    def __init__(
        self,
        db: sqlite3.Connection,
        transaction: Callable[[], AbstractContextManager[sqlite3.Connection]],
    ) -> None:
        self._db, self._transaction = db, transaction

    def start(
        self,
        stage: str,
        fingerprint: str,
        inputs: Mapping[str, InputPin],
        config: Mapping[str, Any] | None = None,
        code_digest: str = "",
        environment: Mapping[str, str] | None = None,
    ) -> int:
        """Record a stage run as started; returns its id."""
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO runs (stage, fingerprint, status, started, inputs, config, code, "
                "environment) VALUES (?, ?, 'running', ?, ?, ?, ?, ?)",
                (
                    stage,
                    fingerprint,
                    time.time(),
                    json.dumps({k: vars(v) for k, v in inputs.items()}, sort_keys=True),
                    json.dumps(dict(config or {}), sort_keys=True),
                    code_digest,
                    json.dumps(dict(environment or {}), sort_keys=True),
                ),
            )
            return int(cur.lastrowid or 0)

    def end(
        self,
        run_id: int,
        outputs: Mapping[str, OutputPin] | None,
        metrics: Mapping[str, Any],
        tracking: Mapping[str, Any] | None = None,
        interrupted: bool = False,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        """Record a run's end: its outputs on success, ``None`` on failure (or interruption).

        ``environment``, when given, is what the run's job ran with (its start did not know).
        """
        status = "ok" if outputs is not None else "interrupted" if interrupted else "failed"
        with self._transaction() as db:
            if environment is not None:
                db.execute(
                    "UPDATE runs SET environment=? WHERE id=?",
                    (json.dumps(dict(environment), sort_keys=True), run_id),
                )
            db.execute(
                "UPDATE runs SET status=?, ended=?, outputs=?, metrics=?, tracking=? WHERE id=?",
                (
                    status,
                    time.time(),
                    json.dumps({k: vars(v) for k, v in (outputs or {}).items()}, sort_keys=True),
                    json.dumps(dict(metrics), sort_keys=True),
                    json.dumps(dict(tracking or {}), sort_keys=True),
                    run_id,
                ),
            )

    def cached(self, fingerprint: str) -> CachedRun | None:
        """The latest successful run with this fingerprint."""
        row = self._db.execute(
            "SELECT outputs, metrics, environment FROM runs WHERE fingerprint=? AND status='ok' "
            "ORDER BY id DESC LIMIT 1",
            (fingerprint,),
        ).fetchone()
        if row is None:
            return None
        outputs = {k: OutputPin(**v) for k, v in json.loads(row[0]).items()}
        return CachedRun(outputs, json.loads(row[1]), json.loads(row[2] or "{}"))

    def tracking(self, fingerprint: str) -> dict[str, Any] | None:
        """The W&B run of the latest successful run with this fingerprint, if it had one."""
        row = self._db.execute(
            "SELECT tracking FROM runs WHERE fingerprint=? AND status='ok' "
            "ORDER BY id DESC LIMIT 1",
            (fingerprint,),
        ).fetchone()
        found: dict[str, Any] = json.loads(row[0] or "{}") if row else {}
        found.pop("created", None)  # the store's own bookkeeping, for `sync`
        return found if found.get("id") else None

    def tracked(self) -> list[dict[str, Any]]:
        """Every run with a W&B record: id, stage, inputs, outputs and tracking, oldest first."""
        rows = self._db.execute(
            "SELECT id, stage, inputs, outputs, tracking FROM runs "
            "WHERE tracking LIKE '%\"id\"%' ORDER BY id"
        ).fetchall()
        return [
            {
                "run": run_id,
                "stage": stage,
                "inputs": json.loads(inputs or "{}"),
                "outputs": json.loads(outputs or "{}"),
                "tracking": json.loads(tracking),
            }
            for run_id, stage, inputs, outputs, tracking in rows
        ]

    def mark_synced(self, run_id: int) -> None:
        """Record that a run's offline W&B record was uploaded."""
        with self._transaction() as db:
            (text,) = db.execute("SELECT tracking FROM runs WHERE id=?", (run_id,)).fetchone()
            db.execute(
                "UPDATE runs SET tracking=? WHERE id=?",
                (json.dumps({**json.loads(text), "synced": True}, sort_keys=True), run_id),
            )

    def all(self) -> list[dict[str, Any]]:
        """Every stage run with what it used, made, and ran with, oldest first."""
        rows = self._db.execute(
            "SELECT id, stage, fingerprint, status, inputs, outputs, metrics, tracking, config, "
            "code FROM runs ORDER BY id"
        ).fetchall()
        keys = (
            "run",
            "stage",
            "fingerprint",
            "status",
            "inputs",
            "outputs",
            "metrics",
            "wandb",
            "config",
            "code_digest",
        )
        decoded = []
        for row in rows:
            run = dict(zip(keys, row, strict=True))
            for key in ("inputs", "outputs", "metrics", "wandb", "config"):
                run[key] = json.loads(run[key] or "{}")
            decoded.append(run)
        return decoded
