"""Content digests: W&B-compatible artifact digests, code digests and stage fingerprints."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

MANIFEST_HEADER = b"wandb-artifact-manifest-v1\n"
_CHUNK = 1 << 20
_LARGE = 1 << 16  # bytes: files this large on average are hashed on every core


def file_md5(path: str | Path) -> str:
    """Base64 MD5 of a file's bytes, as a W&B manifest entry records it."""
    hasher = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            hasher.update(chunk)
    return _b64(hasher.digest())


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def files_md5(paths: Sequence[str | Path]) -> list[str]:
    """:func:`file_md5` of each path, on every core when the files are large.

    MD5 frees the GIL while it hashes a large buffer, so threads hash large files side by
    side; for small files the interpreter's own work dominates and one thread is faster.
    """
    if len(paths) < 2 or sum(os.path.getsize(p) for p in paths) < len(paths) * _LARGE:
        return [file_md5(path) for path in paths]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(file_md5, paths))


def manifest_digest(entries: Mapping[str, str]) -> str:
    """Digest of a manifest ``{relative posix path: base64 md5}``, as W&B computes it.

    Equal relative paths and bytes give equal digests; names and metadata do not count.
    """
    hasher = hashlib.md5(MANIFEST_HEADER)
    for path in sorted(entries):
        hasher.update(f"{path}:{entries[path]}\n".encode())
    return hasher.hexdigest()


def canonical_json(value: Any) -> str:
    """A stable serialisation: sorted keys, no whitespace, floats as ``repr``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(
    stage: str, code_digest: str, config: Mapping[str, Any], inputs: Mapping[str, str]
) -> str:
    """The identity of a stage run: stage name, code, resolved config and input digests."""
    payload = canonical_json(
        {"stage": stage, "code": code_digest, "config": config, "inputs": dict(inputs)}
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _imported_modules(source: str, module: str) -> list[list[str]]:
    """Modules a source imports, wherever in the file, as lists of alternatives.

    ``from pkg import a`` may name the submodule ``pkg.a`` or an attribute of
    ``pkg``: its entry is ``["pkg.a", "pkg"]``, and the first that exists counts.
    """
    package = module.rpartition(".")[0]
    found: list[list[str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend([alias.name] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.extend([f"{base}.{alias.name}", base] for alias in node.names)
    return found


def _module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def code_files(
    root: Path, modules: Iterable[str], known: MutableMapping[str, list[list[str]]] | None = None
) -> dict[str, str]:
    """Project source files the modules import, transitively: ``{relative path: md5}``.

    Imports are read statically (no module is executed), and only modules whose
    file lies under ``root`` count, so libraries and unrelated files never do.
    Parent packages are left out: ``stages/__init__.py`` lists every stage, and
    an edit to one stage must not make the others stale. ``known`` keeps what each
    file imports under its module name and MD5, so that no file is parsed twice.
    """
    known = {} if known is None else known
    todo = [[name] for name in modules]
    files: dict[str, str] = {}
    while todo:
        path = next(filter(None, (_module_file(root, m) for m in todo.pop())), None)
        if path is None:
            continue
        rel = path.relative_to(root).as_posix()
        if rel in files:
            continue
        data = path.read_bytes()
        files[rel] = _b64(hashlib.md5(data).digest())  # as `file_md5`; the bytes parse too
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        key = f"{name}:{files[rel]}"
        if key not in known:
            known[key] = _imported_modules(data.decode("utf-8"), name)
        todo.extend(known[key])
    return dict(sorted(files.items()))


def code_digest(files: Mapping[str, str]) -> str:
    """One digest over the files of :func:`code_files`."""
    return hashlib.sha256(canonical_json(dict(files)).encode()).hexdigest()
