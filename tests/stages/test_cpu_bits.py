"""train and evaluate give the same bits whatever x86-64 CPU runs them (issue 16's CI miss).

A lock made on an AMD EPYC did not reproduce on an Intel Xeon under the same pins.  The
causes are the libraries that choose kernels by the CPU they find: MKL (its AVX2 branch
is Intel-only; elsewhere it dispatches by the CPU), oneDNN and NNPACK.  These tests change
what each of them would see, on one machine, and ask for the same model and predictions:

- MKL is told the CPU is not Intel's, through its own vendor check
  (``mkl_serv_intel_cpu_true``, which torch exports) overridden by a preloaded library;
  a control shows that the override reaches MKL (the AVX2 branch then changes the bits).
- oneDNN is capped at SSE4.1 instead of AVX2: its kernels change, so the bits would too.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline import spec

ROOT = Path(__file__).resolve().parents[2]
COMPILER = shutil.which("cc") or shutil.which("gcc")

pytestmark = [
    pytest.mark.skipif(
        platform.machine().lower() not in ("x86_64", "amd64"),
        reason="the pinned CPU paths are x86-64's",
    ),
    pytest.mark.skipif(
        COMPILER is None and not os.environ.get("CI"),
        reason="no C compiler for the MKL vendor shim: `apt-get install gcc` "
        "(required when CI is set; .ci/run installs it)",
    ),
]

#: Trains the default model (convolutions: oneDNN's and NNPACK's domain) and evaluates it.
SCRIPT = """
import hashlib, sys
from pathlib import Path
from pipeline.spec import pin_cpu_numerics
pin_cpu_numerics()
from stages import models
from stages.evaluate import evaluate
from stages.train import train
dataset, out = Path(sys.argv[1]), Path(sys.argv[2])
train(dataset, out / "t", models.cnn, epochs=3, device="cpu")
evaluate(out / "t" / "model", dataset, out / "e", device="cpu")
files = [out / "t" / "model" / "state_dict.pt", out / "e" / "evaluation" / "metrics.json"]
print(*(hashlib.sha256(f.read_bytes()).hexdigest() for f in files))
"""


@pytest.fixture(scope="module")
def not_intel(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A library that, preloaded, makes MKL's vendor check answer "not an Intel CPU"."""
    assert COMPILER is not None, "no C compiler (cc or gcc): `apt-get install gcc`"
    folder = tmp_path_factory.mktemp("shim")
    (folder / "shim.c").write_text("int mkl_serv_intel_cpu_true(void) { return 0; }\n")
    built = folder / "libnotintel.so"
    subprocess.run(
        [COMPILER, "-shared", "-fPIC", "-o", str(built), str(folder / "shim.c")], check=True
    )
    return str(built)


@pytest.fixture(scope="module")
def bits(dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """Run :data:`SCRIPT` in a new process with ``env`` over the pins' defaults."""

    def run(**env: str) -> str:
        clean = {k: v for k, v in os.environ.items() if k not in spec.CPU_PATHS}
        out = tmp_path_factory.mktemp("run")
        found = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(dataset_dir), str(out)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**clean, "PYTHONPATH": str(ROOT), **env},
        )
        assert found.returncode == 0, found.stderr
        return found.stdout

    return run


@pytest.fixture(scope="module")
def pinned(bits: Callable[..., str]) -> str:
    """The bits under the pins alone."""
    return bits()


def test_mkl_gives_the_same_bits_on_a_cpu_it_takes_for_another_vendors(
    bits: Callable[..., str], pinned: str, not_intel: str
) -> None:
    assert bits(LD_PRELOAD=not_intel) == pinned
    if _intel():
        # Control: the shim reaches MKL, whose AVX2 branch then falls back to its dispatch
        # (on another vendor's CPU it falls back either way, so there is nothing to see).
        assert bits(MKL_CBWR="AVX2", LD_PRELOAD=not_intel) != bits(MKL_CBWR="AVX2")


def _intel() -> bool:
    try:
        return "GenuineIntel" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def test_onednn_is_out_of_the_stages_math(bits: Callable[..., str], pinned: str) -> None:
    assert bits(ONEDNN_MAX_CPU_ISA="SSE41") == pinned
