"""A smoke run of the benchmarks (tiny sizes, our side only), so that they cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_smoke_run_of_every_benchmark(tmp_path: Path) -> None:
    # Our side only and tiny sizes: this checks that the suite runs, never how fast.
    env = {**os.environ, "BENCH_SCRATCH": str(tmp_path / "scratch")}
    results = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--no-dvc", "--json", str(results)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| benchmark | ours median | DVC median | ratio | target | met? |" in done.stdout
    doc = json.loads(results.read_text())
    names = [r["name"] for r in doc["results"]]
    assert names == [
        "noop_run",
        "noop_status",
        "first_commit_blob",
        "first_commit_shards",
        "full_pipeline",
        "sweep_2000",
        "after_touch_status",
        "after_touch_run",
        "after_edit_status",
        "after_checkout_status",
        "after_checkout_run",
        "sweep_in_lock",
    ]
    assert all(r["ours"] or r["extra"].get("seconds") for r in doc["results"])
    assert doc["smoke"] is True
    assert not list((tmp_path / "scratch" / "runs").iterdir())  # every workspace removed


def _bench(*args: str, env: dict[str, str] | None = None) -> str:
    """Run ``python -m ARGS`` in the repository; its output, once it exited 0."""
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_smoke_run_of_the_pull_benchmark(tmp_path: Path) -> None:
    # 1 MiB, one round, two epochs: it runs against the test server, timing nothing.
    shown = _bench(
        "bench.pull", "1", "1", "train.epochs=2", env={**os.environ, "TMPDIR": str(tmp_path)}
    )
    assert "pull of a 1 MiB artifact: ours" in shown
    assert "`pipeline pull` of the default lock" in shown


def test_smoke_run_of_the_cpu_kernels_benchmark(tmp_path: Path) -> None:
    # One round of one epoch each way: it runs both ways, timing nothing.
    shown = _bench("bench.cpu_kernels", "1", "1", env={**os.environ, "TMPDIR": str(tmp_path)})
    assert "train, median of 1: old paths " in shown
    # Its data and models removed (torch makes its own compiler cache folder there).
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("torchinductor")] == []
