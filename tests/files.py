"""Small data files in the formats real loaders read, written by the tests themselves."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pipeline.state.store import Store


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (MNIST's): big-endian magic (0x08 = uint8, then the number of dims),
    the dims, then the raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(
    root: Path, train: int = 12, test: int = 5, folder: str = "MNIST", seed: int = 0
) -> Path:
    """Random MNIST-format files under ``root/folder/raw``; the folder."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    for prefix, n in (("train", train), ("t10k", test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return raw


def stage_output(store: Store, files: dict[str, bytes]) -> Path:
    """A staging folder of ``store`` holding ``files`` (relative path -> bytes)."""
    folder = store.staging()
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder
