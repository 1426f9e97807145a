"""The train stage on a GPU against a bare PyTorch loop of the same model and data.

``python -m bench.gpu_train [EPOCHS] [ROUNDS]`` prepares the default data set (digits),
then times, alternating, the `train` stage function (device=cuda, its default CNN, batch
size and optimiser) and a plain loop a researcher would write (same model, data on the
GPU, AdamW, shuffled mini-batches, a validation pass per epoch). Prints training images
per second for each, their medians and the ratio, as JSON.
"""

from __future__ import annotations

import contextlib
import functools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from stages import data, models
from stages.prepare_data import prepare_data
from stages.train import train


def _bare(folder: Path, epochs: int, batch_size: int = 64) -> float:
    dev = torch.device("cuda")
    meta = data.read_meta(folder)
    x, y = (torch.from_numpy(a).to(dev) for a in data.read_split(folder, "train"))
    xv, yv = (torch.from_numpy(a).to(dev) for a in data.read_split(folder, "val"))
    torch.manual_seed(0)
    net = models.cnn(meta["input_shape"], meta["num_classes"]).to(dev)
    optimizer = torch.optim.AdamW(net.parameters(), lr=0.003, weight_decay=0.0001)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        for index in torch.randperm(len(y), device=dev).split(batch_size):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x[index]), y[index]).backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            accuracy = (net(xv).argmax(1) == yv).float().mean()
    float(accuracy)
    torch.cuda.synchronize()
    return time.perf_counter() - start


def _stage(folder: Path, out: Path, epochs: int) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    train(folder, out, functools.partial(models.cnn), epochs=epochs, device="cuda")
    torch.cuda.synchronize()
    return time.perf_counter() - start


@contextlib.contextmanager
def _without_determinism() -> Iterator[None]:
    from stages import train as module

    saved = module._deterministic_algorithms
    module._deterministic_algorithms = lambda mode, warn_only: None
    try:
        yield
    finally:
        module._deterministic_algorithms = saved


def main(epochs: int = 50, rounds: int = 5) -> dict[str, object]:
    """Images per second of the stage and of the bare loop; the ratio of the medians."""
    root = Path(tempfile.mkdtemp())
    prepare_data(data.digits, root / "prep")
    folder = root / "prep" / "dataset"
    images = len(data.read_split(folder, "train")[1]) * epochs
    _stage(folder, root / "warm", 2), _bare(folder, 2)  # CUDA start-up, kernels, allocator
    ours, bare, loose = [], [], []
    for i in range(rounds):
        ours.append(images / _stage(folder, root / f"out{i}", epochs))
        bare.append(images / _bare(folder, epochs))
        with _without_determinism():
            loose.append(images / _stage(folder, root / f"loose{i}", epochs))
    result: dict[str, object] = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "epochs": epochs,
        "images_per_epoch": images // epochs,
        "stage_images_per_s": [round(v) for v in ours],
        "bare_images_per_s": [round(v) for v in bare],
        "ratio": statistics.median(ours) / statistics.median(bare),
        # What the stage's bit-determinism costs: the same stage with it switched off.
        "stage_without_determinism_images_per_s": [round(v) for v in loose],
        "ratio_without_determinism": statistics.median(loose) / statistics.median(bare),
    }
    return result


if __name__ == "__main__":
    print(json.dumps(main(*map(int, sys.argv[1:])), indent=2))
