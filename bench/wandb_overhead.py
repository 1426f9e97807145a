"""W&B's cost on a full default run: offline tracking against `wandb.mode=disabled`.

Runs the two side by side, alternating, each in a fresh workspace, and prints the
median wall times and their difference.  Usage: python -m bench.wandb_overhead [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from bench.common import timed_run


def main(rounds: int = 3, extra: tuple[str, ...] = ()) -> dict[str, float]:
    """Median wall seconds with W&B offline and disabled, and the difference."""
    times: dict[str, list[float]] = {"offline": [], "disabled": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            times["offline"].append(timed_run([*extra], Path(tmp)))
            times["disabled"].append(timed_run([*extra, "wandb.mode=disabled"], Path(tmp)))
    result = {mode: statistics.median(values) for mode, values in times.items()}
    result["overhead"] = result["offline"] - result["disabled"]
    return result


if __name__ == "__main__":
    found = main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
    print(
        f"median wall time: W&B offline {found['offline']:.2f} s, "
        f"disabled {found['disabled']:.2f} s, W&B costs {found['overhead']:.2f} s"
    )
