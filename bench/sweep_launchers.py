"""A 4-member sweep under Hydra's basic launcher and under joblib with 2 workers.

Each round runs both, alternating, in fresh workspaces; prints the medians and their
ratio.  Usage: python -m bench.sweep_launchers [N] [extra overrides...]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from bench.common import timed_run

SWEEP = ["plot", "-m", "train.lr=1e-3,1e-2", "train.model=mlp,cnn"]
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]


def main(rounds: int = 3, extra: tuple[str, ...] = ()) -> dict[str, float]:
    """Median wall seconds of the sweep per launcher, and basic / joblib."""
    times: dict[str, list[float]] = {"basic": [], "joblib": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            times["basic"].append(timed_run([*SWEEP, *extra], Path(tmp)))
            times["joblib"].append(timed_run([*SWEEP, *extra, *JOBLIB], Path(tmp)))
    result = {name: statistics.median(values) for name, values in times.items()}
    result["speedup"] = result["basic"] / result["joblib"]
    return result


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    found = main(rounds, tuple(sys.argv[2:]))
    print(
        f"4-member sweep, median wall time: basic launcher {found['basic']:.2f} s, "
        f"joblib (2 workers) {found['joblib']:.2f} s, speed-up {found['speedup']:.2f}x"
    )
