"""Importing `stages` (to plan) must stay cheap and free of heavy or forbidden modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "matplotlib", "sklearn", "mnist1d", "wandb")


def test_importing_every_stage_loads_no_heavy_module() -> None:
    code = (
        "import sys, stages, stages.app\n"
        "assert [s.name for s in stages.STAGES] == "
        "['prepare_data', 'train', 'evaluate', 'plot']\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_stage_code_imports_nothing_from_pipeline_but_spec_and_never_wandb() -> None:
    for path in sorted((ROOT / "stages").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert not name.startswith("wandb"), f"{path.name} imports {name}"
                if name.split(".")[0] == "pipeline":
                    assert name == "pipeline.spec", f"{path.name} imports {name}"
