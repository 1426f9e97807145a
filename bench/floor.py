"""Benchmark 4's floor: DVC's four stage commands run in one interpreter, nothing else.

`python -m bench.floor` in a workspace that `bench.cases` wrote a `dvc.yaml` into runs each
stage's command line (`python -m stages.<stage> ...`, params filled in) as the same Hydra
app, one after another in this process: what our side would cost with no orchestration at
all (no planning, store, lock or digests). It shares our one interpreter (torch imported
once) and DVC's commands, so ours / DVC can be no lower than floor / DVC.
"""

from __future__ import annotations

import importlib
import shlex
import sys
from pathlib import Path

import yaml


def commands(folder: Path) -> list[list[str]]:
    """Each stage's command line from ``dvc.yaml``, its `${stage.key}` params filled in."""
    stages = yaml.safe_load((folder / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((folder / "params.yaml").read_text())
    found = []
    for stage in stages.values():
        cmd = stage["cmd"]
        for name, values in params.items():
            for key, value in values.items():
                cmd = cmd.replace(f"${{{name}.{key}}}", str(value))
        found.append(shlex.split(cmd))
    return found


def main() -> int:
    """Run every stage of ``dvc.yaml`` in the working folder as its Hydra app."""
    sys.path.insert(0, str(Path.cwd()))
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra

    from stages import app

    for argv in commands(Path.cwd()):
        module = argv[argv.index("-m") + 1]
        sys.argv = [module, *argv[argv.index("-m") + 2 :]]
        spec = importlib.import_module(module).SPEC
        try:
            app.main(spec)
        except SystemExit as stop:  # Hydra exits on a failed job
            if stop.code:
                raise
        # The next app starts clean: no Hydra instance, none of this stage's groups.
        GlobalHydra.instance().clear()
        for group in spec.groups:
            ConfigStore.instance().repo.pop(group, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
