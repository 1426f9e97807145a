"""Deterministic writers of big artifacts, and DVC's command: `python -m bench.bigstages.write`."""

from __future__ import annotations

import random
import sys
from pathlib import Path

_BLOCK = random.Random(0).randbytes(1 << 20)


def blob(folder: Path, size_mb: int) -> int:
    """Write ``folder/blob.bin`` of ``size_mb`` MiB; returns its size in bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "blob.bin", "wb") as fh:
        for i in range(size_mb):
            fh.write(i.to_bytes(8, "little"))  # no two MiB blocks alike
            fh.write(_BLOCK[8:])
    return size_mb << 20


def shards(folder: Path, count: int) -> int:
    """Write ``count`` files of 1 to 4 KiB into ``folder/<i // 100>/<i>.bin``; returns bytes."""
    total = 0
    for i in range(count):
        sub = folder / f"{i // 100:03d}"
        if i % 100 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        size = 1024 + (i * 2654435761) % 3072
        start = (i * 7919) % (len(_BLOCK) - size)
        (sub / f"{i:05d}.bin").write_bytes(i.to_bytes(8, "little") + _BLOCK[start : start + size])
        total += size + 8
    return total


WRITERS = {"blob": blob, "shards": shards}

if __name__ == "__main__":
    kind, out, amount = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    WRITERS[kind](out / kind, amount)
