"""What the vendor-neutral CPU kernels cost: the default train stage, old paths against new.

"new" is train as it runs: MKL's COMPATIBLE branch, oneDNN and NNPACK off.  "old" is the
same call with MKL's AVX2 branch and oneDNN and NNPACK on (the settings before; faster,
but an AMD and an Intel CPU train two models).  Each round trains once each way, in a
fresh process (torch reads the pins once), alternating.  Usage:
python -m bench.cpu_kernels [ROUNDS] [EPOCHS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

from pipeline import spec

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import contextlib, sys, tempfile, time
from pathlib import Path
from pipeline.spec import pin_cpu_numerics
pin_cpu_numerics()
from stages import data, models
from stages.prepare_data import prepare_data
from stages.train import train
if sys.argv[1] == "old":  # the thread count pinned as before, oneDNN and NNPACK left on
    import torch

    @contextlib.contextmanager
    def threads_only(threads):
        saved = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(saved)

    models.portable_kernels = threads_only
with tempfile.TemporaryDirectory() as folder:
    root = Path(folder)
    prepare_data(data.digits, root / "p")
    start = time.perf_counter()
    train(root / "p" / "dataset", root / "t", models.cnn, epochs=int(sys.argv[2]), device="cpu")
    print(time.perf_counter() - start)
"""
#: The pins before: MKL's AVX2 branch (Intel-only).
OLD = {**spec.CPU_PATHS, "MKL_CBWR": "AVX2"}


def train_seconds(way: str, epochs: int) -> float:
    """Seconds of one ``train`` call (the default CNN on digits) the ``way`` named."""
    env = {k: v for k, v in os.environ.items() if k not in spec.CPU_PATHS}
    env.update(OLD if way == "old" else spec.CPU_PATHS, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, way, str(epochs)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return float(done.stdout.split()[-1])


def main(rounds: int = 5, epochs: int = 30) -> dict[str, float]:
    """Median seconds of each way, and new / old."""
    times: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(rounds):
        for way, seen in times.items():
            seen.append(train_seconds(way, epochs))
    found = {way: statistics.median(seen) for way, seen in times.items()}
    found["ratio"] = found["new"] / found["old"]
    return found


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    result = main(*args)
    print(
        f"train, median of {args[0] if args else 5}: old paths {result['old']:.2f} s, "
        f"vendor-neutral {result['new']:.2f} s, ratio {result['ratio']:.2f}"
    )
