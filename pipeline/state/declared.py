"""The declarations cache: the stages' specs and composed configs, without importing them.

Importing the stages imports hydra-zen and Hydra (a third of a second), and composing four
configs costs as much again, on every `status` after any edit. What the import and the
composition produce depends only on what importing the stage modules runs (their
outlines, `pipeline.core.outline`), the tool's own code, the Python and library versions, and
the overrides. `.pipeline/declared.json` keeps, under all of those, each stage's
declaration (name, module, uses, logs, groups) and every config composed for it: the
results of Hydra's compositions and of OmegaConf's typing of plain values
(`compose.compose_all` asks the cache before Hydra).

It vouches for itself on every read: each source file's MD5 is compared, a changed file is
outlined again, and the cache answers only if every outline is the same and no function
whose body changed can run at import. Otherwise it is ignored and rewritten by the full
path; it never decides alone, and a cache that cannot be read as one is ignored.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import uuid
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core import graph, outline
from pipeline.core.digest import code_files, file_md5
from pipeline.core.paths import STORE_DIR, TOOL, declared_cache, stages_package, tool_sources
from pipeline.spec import OUT_PARAM, Output
from pipeline.state import memo

_VERSION = 1
# Libraries whose version could change a declaration or a composed config (import names);
# the libraries the stages import when imported are added.
_LIBRARIES = ("hydra", "hydra_zen", "omegaconf")
_CLOCK_SLACK_NS = 50_000_000  # as in `pipeline.state.memo`: file times lag by a few milliseconds


@dataclass(frozen=True)
class Declared:
    """What a stage declares, as the planner needs it: no task, no config objects."""

    name: str
    module: str
    uses: tuple[str, ...] = ()
    logs: tuple[Output, ...] = ()
    fan_in: tuple[str, ...] = ()
    groups: Mapping[str, Mapping[str, None]] = field(default_factory=dict)

    @property
    def path_params(self) -> frozenset[str]:
        """Task parameters the runner fills with paths (as :class:`StageSpec` has them)."""
        return frozenset((*self.uses, OUT_PARAM))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "name": self.name,
            "module": self.module,
            "uses": list(self.uses),
            "logs": [[o.name, o.type, o.artifact, o.media] for o in self.logs],
            "fan_in": list(self.fan_in),
            "groups": {g: sorted(options) for g, options in self.groups.items()},
        }


def declared(spec: Any) -> Declared:
    """The declaration of a :class:`~pipeline.spec.StageSpec`."""
    return Declared(
        spec.name,
        spec.module,
        tuple(spec.uses),
        tuple(spec.logs),
        tuple(spec.fan_in),
        {g: dict.fromkeys(options) for g, options in spec.groups.items()},
    )


def _from_json(data: Mapping[str, Any]) -> Declared:
    logs = tuple(Output(str(n), str(t), str(a), bool(m)) for n, t, a, m in data["logs"])
    groups = {str(g): dict.fromkeys(map(str, options)) for g, options in data["groups"].items()}
    return Declared(
        str(data["name"]),
        str(data["module"]),
        tuple(map(str, data["uses"])),
        logs,
        tuple(map(str, data["fan_in"])),
        groups,
    )


@dataclass
class Declarations:
    """A workspace's cached declarations: the stages, their sources, their configs."""

    stages: list[Declared]
    configs: MutableMapping[str, Any]  # `compose.compose_all`'s cache, JSON values only
    outlines: dict[str, tuple[str, outline.Outline]]  # source path -> (MD5, outline)
    imports: dict[str, list[list[str]]]  # `digest.code_files`'s cache: what each file imports
    dag: graph.Dag | None = None  # networkx's DAG of the stages

    @classmethod
    def empty(cls) -> Declarations:
        """Nothing cached yet: what a first opening fills."""
        return cls([], {}, {}, {})


def package() -> str:
    """The stages' package, as `discover.stage_specs` finds it."""
    return stages_package()


def source_root(module: str) -> Path | None:
    """The folder holding a module's top-level package, found without importing it."""
    top = module.split(".")[0]
    loaded = sys.modules.get(top)
    file = getattr(loaded, "__file__", None)
    if file is None:
        try:
            found = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return None
        file = found.origin if found is not None else None
    if file is None:
        return None
    path = Path(file)
    return path.parent.parent if path.name == "__init__.py" else path.parent


def _sources(
    root: Path, modules: Iterable[str], imports: MutableMapping[str, list[list[str]]]
) -> dict[str, str]:
    """``{path: md5}`` of every file the declarations come from.

    The package's own files (its list of stages among them) and what each stage module
    imports; paths relative to ``root``, except the tool's own code (absolute).
    """
    names = list(modules)
    found = code_files(root, names, imports)
    for top in sorted({root / m.split(".")[0] for m in names}):
        for path in sorted(top.rglob("*.py")) if top.is_dir() else ():
            found.setdefault(path.relative_to(root).as_posix(), file_md5(path))
    return found


def _context(imports: Iterable[str]) -> list[Any]:
    """What a declaration depends on besides the sources: Python, libraries, our own code."""
    return [
        _VERSION,
        sys.version,
        package(),
        [[p.relative_to(TOOL).as_posix(), file_md5(p)] for p in tool_sources()],
        memo.libraries([*_LIBRARIES, *imports]),
    ]


def _path(workspace: Path) -> Path:
    return declared_cache(workspace)


def recall(workspace: Path) -> Declarations | None:
    """The cached declarations, if the sources still declare them; else ``None``."""
    try:
        data = json.loads(_path(workspace).read_text(encoding="utf-8"))
        stages = [_from_json(item) for item in data["stages"]]
        if not stages or not all(s.module.split(".")[0] == package() for s in stages):
            return None
        root = source_root(stages[0].module)
        if root is None:
            return None
        old = {
            path: (str(md5), outline.from_json(item))
            for path, (md5, item) in data["outlines"].items()
        }
        imports = _imports(data["imports"])
        now = _outlines(root, (s.module for s in stages), old, imports)
        if now is None or not outline.same_declarations(
            {p: o for p, (_, o) in old.items()}, {p: o for p, (_, o) in now.items()}
        ):
            return None
        libraries = [name for _, item in now.values() for name in item.imports]
        if data["context"] != json.loads(json.dumps(_context(libraries))):
            return None
        configs = data["configs"]
        if not isinstance(configs, dict):
            return None
        dag = graph.from_json(data["dag"]) if data["dag"] is not None else None
        return Declarations(stages, configs, now, imports, dag)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SyntaxError):
        return None


def _imports(data: object) -> dict[str, list[list[str]]]:
    if not isinstance(data, dict):
        raise TypeError("not a mapping")
    found = {}
    for key, alternatives in data.items():
        if not isinstance(alternatives, list):
            raise TypeError("not a list")
        found[str(key)] = [list(map(str, outline.names(a))) for a in alternatives]
    return found


def _outlines(
    root: Path,
    modules: Iterable[str],
    known: Mapping[str, tuple[str, outline.Outline]],
    imports: MutableMapping[str, list[list[str]]],
) -> dict[str, tuple[str, outline.Outline]] | None:
    """Each source's MD5 and outline; a known MD5 is not outlined again. ``None``: unreadable."""
    found = {}
    for path, md5 in _sources(root, modules, imports).items():
        if path in known and known[path][0] == md5:
            found[path] = known[path]
            continue
        try:
            found[path] = (md5, outline.outline((root / path).read_text(encoding="utf-8")))
        except (OSError, SyntaxError, ValueError):
            return None
    return found


def remember(workspace: Path, specs: Sequence[Any], caches: Declarations, since_ns: int) -> bool:
    """Record the specs' declarations and configs, unless a source changed after ``since_ns``.

    ``caches`` holds the configs composed and the imports read (its outlines are reused
    where a file's MD5 is the same). Nothing is written where there is no store yet (a
    command on bad input must not create one), and no value that does not come back from
    JSON as it went in.
    """
    store = workspace / STORE_DIR
    root = source_root(specs[0].module) if specs else None
    if root is None or not store.is_dir():
        return False
    try:
        now = _outlines(root, (s.module for s in specs), caches.outlines, caches.imports)
    except (OSError, ValueError, SyntaxError):
        return False
    if now is None:
        return False
    for path in now:
        try:
            if (root / path).stat().st_mtime_ns >= since_ns - _CLOCK_SLACK_NS:
                return False
        except OSError:
            return False
    md5s = {md5 for md5, _ in now.values()}
    libraries = [name for _, item in now.values() for name in item.imports]
    data = {
        "context": _context(libraries),
        "stages": [declared(s).to_json() for s in specs],
        "outlines": {p: [md5, item.to_json()] for p, (md5, item) in sorted(now.items())},
        "configs": {k: v for k, v in caches.configs.items() if _json_exact(v)},
        "imports": {k: v for k, v in caches.imports.items() if k.rpartition(":")[2] in md5s},
        "dag": caches.dag.to_json() if caches.dag is not None else None,
    }
    target = _path(workspace)
    tmp = target.with_name(f".{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True


def _json_exact(value: Any) -> bool:
    """Whether ``value`` comes back from JSON with the same value and types."""
    try:
        back = json.loads(json.dumps(value, allow_nan=True))
    except (TypeError, ValueError):
        return False
    return _same(value, back)


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) or (a != a and b != b)  # NaN equals itself here
