"""The README's layout map and the import contracts agree with the folders of `pipeline/`."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pipeline"
FOLDERS = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))


def _map() -> dict[str, str]:
    """Each folder's entry in the README's Layout block: its name -> its text."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Layout\n", 1)[1].split("```\n", 2)[1]
    entries: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        if found := re.match(r"  ([a-z_]+)/\s", line):
            current = found[1]
            entries[current] = line
        elif line.startswith("      ") and current is not None:
            entries[current] += line
        else:
            current = None
    return entries


def test_the_readme_maps_every_folder_and_every_module_in_it() -> None:
    entries = _map()
    assert sorted(entries) == FOLDERS
    for folder in FOLDERS:
        modules = {p.stem for p in (PACKAGE / folder).glob("*.py")} - {"__init__"}
        named = set(re.findall(r"[a-z_]+", entries[folder]))
        assert modules <= named, f"{folder}/: the README's layout lacks {modules - named}"


def test_each_folder_says_what_lives_there_and_what_it_may_import() -> None:
    for folder in FOLDERS:
        doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
        assert doc and "import" in doc, f"pipeline/{folder}/__init__.py"


def test_the_layers_contract_is_the_folders() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    named = {part.strip() for layer in layers for part in layer.split("|")}
    assert {f"pipeline.{folder}" for folder in FOLDERS} <= named
    # Every module outside the folders has its place too.
    loose = {f"pipeline.{p.stem}" for p in PACKAGE.glob("*.py")} - {"pipeline.__init__"}
    assert loose <= named
