"""Locks the lock's tests share."""

from __future__ import annotations

from pipeline.core import lock


def sample() -> lock.Lock:
    """A one-stage lock with a value of every kind a block holds."""
    entry = lock.StageLock(
        fingerprint="f" * 64,
        code_digest="c" * 64,
        code={"stages/train.py": "abc=="},
        config={"lr": 0.001, "model": {"_target_": "stages.models.cnn"}},
        overrides=("lr=0.001",),
        inputs={"dataset": lock.InputPin("dataset-digits", "v0", "d" * 32)},
        outputs={"model": lock.OutputPin("model", "model", "v1", "e" * 32, 1234, 3)},
        metrics={"val_accuracy": 0.98},
        environment={"python": "3.11.7", "torch": "2.14.1"},
    )
    return lock.Lock({"train": entry})
