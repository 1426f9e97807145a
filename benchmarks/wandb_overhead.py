"""W&B's cost on a full default run: offline tracking against `wandb.mode=disabled`.

Runs the two side by side, alternating, each in a fresh workspace, and prints the
median wall times and their difference.  Usage: python benchmarks/wandb_overhead.py [N]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run_once(extra: list[str], home: Path) -> float:
    workspace = Path(tempfile.mkdtemp(dir=home))
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DATA_DIR": str(home / "wandb-data")}
    env.pop("WANDB_DIR", None)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pipeline", "--workspace", str(workspace), "run", *extra],
        check=True,
        env=env,
        capture_output=True,
    )
    return time.perf_counter() - start


def main(rounds: int = 3, extra: tuple[str, ...] = ()) -> dict[str, float]:
    """Median wall seconds with W&B offline and disabled, and the difference."""
    times: dict[str, list[float]] = {"offline": [], "disabled": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            times["offline"].append(_run_once([*extra], Path(tmp)))
            times["disabled"].append(_run_once([*extra, "wandb.mode=disabled"], Path(tmp)))
    result = {mode: statistics.median(values) for mode, values in times.items()}
    result["overhead"] = result["offline"] - result["disabled"]
    return result


if __name__ == "__main__":
    found = main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
    print(
        f"median wall time: W&B offline {found['offline']:.2f} s, "
        f"disabled {found['disabled']:.2f} s, W&B costs {found['overhead']:.2f} s"
    )
