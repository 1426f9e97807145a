"""What importing a module runs: its source with the bodies of its functions cut out.

A stage's spec and hydra-zen config are made when its module is imported, by the module's
top-level statements, class bodies, decorators and function signatures (hydra-zen's
``builds`` reads a signature, never a body). A function's body runs at import only if
import-time code calls it. So two versions of a set of modules declare the same stages and
configs when each module's outline is the same and no function whose body differs can be
called at import (:func:`same_declarations`). That is what lets an edit inside a training
loop be answered without importing Hydra, and any other edit take the full path.

The check is conservative: a function counts as possibly called at import when its name is
loaded anywhere in import-time code (as a callee, a decorator, a default, a value), except
as a direct argument of a callee known to store rather than call what it is given
(``builds``, ``StageSpec``, ...). Dunder methods (``__init__``, a package's
``__getattr__``) run implicitly, so their bodies stay in the outline.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Callees that keep the functions passed to them and do not call them while importing.
_STORING = frozenset({"builds", "just", "make_config", "partial", "StageSpec", "Output"})


Passed = tuple[str, str, str]  # (callee, argument slot: position or keyword, name passed)


@dataclass(frozen=True)
class Outline:
    """One module's outline: its digest, its functions' bodies, what import time reaches."""

    digest: str  # SHA-256 of the module with function bodies cut to their docstring
    bodies: Mapping[str, str]  # qualified function name -> SHA-256 of its body
    reached: frozenset[str]  # names loaded by import-time code (beyond storing callees)
    passed: frozenset[Passed]  # names import-time code passes bare to other callees
    calls: Mapping[str, frozenset[str]]  # function name -> names its body loads or passes
    stores: Mapping[str, frozenset[str]]  # function name -> its parameters it only stores
    imports: frozenset[str]  # top-level packages imported by import-time code

    def to_json(self) -> dict[str, object]:
        """A JSON-ready form (see :func:`from_json`)."""
        return {
            "digest": self.digest,
            "bodies": dict(self.bodies),
            "reached": sorted(self.reached),
            "passed": [list(p) for p in sorted(self.passed)],
            "calls": {k: sorted(v) for k, v in self.calls.items()},
            "stores": {k: sorted(v) for k, v in self.stores.items()},
            "imports": sorted(self.imports),
        }


def from_json(data: Mapping[str, Any]) -> Outline:
    """The outline :meth:`Outline.to_json` wrote; ``TypeError``/``KeyError`` if it is not one."""
    passed = data["passed"]
    if not isinstance(passed, list) or not all(len(names(p)) == 3 for p in passed):
        raise TypeError("not an outline")
    return Outline(
        digest=str(data["digest"]),
        bodies={str(k): str(v) for k, v in _mapping(data["bodies"]).items()},
        reached=frozenset(names(data["reached"])),
        passed=frozenset((p[0], p[1], p[2]) for p in passed),
        calls={str(k): frozenset(names(v)) for k, v in _mapping(data["calls"]).items()},
        stores={str(k): frozenset(names(v)) for k, v in _mapping(data["stores"]).items()},
        imports=frozenset(names(data["imports"])),
    )


def _mapping(value: object) -> Mapping[Any, Any]:
    if not isinstance(value, dict):
        raise TypeError("not a mapping")
    return value


def names(value: object) -> list[str]:
    """``value`` if it is a list of strings (names read from JSON); else ``TypeError``."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("not a list of names")
    return value


def outline(source: str) -> Outline:
    """The outline of a module's source (``SyntaxError`` if it does not parse)."""
    tree = ast.parse(source)
    # `from m import f as g`: reaching `g` reaches `f`.
    aliases = {a.asname: a.name for a in ast.walk(tree) if isinstance(a, ast.alias) and a.asname}
    cutter = _Cutter()
    cutter.visit(tree)
    imports: set[str] = set()
    for node in ast.walk(tree):  # what import time imports: the cut bodies are gone
        if isinstance(node, ast.Import):
            imports.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            imports.add(node.module.split(".")[0])

    def named(loads: Iterable[str]) -> frozenset[str]:
        return frozenset(loads) | {aliases[n].split(".")[-1] for n in loads if n in aliases}

    reached, passed = _scan([tree])
    return Outline(
        digest=_sha(ast.dump(tree)),
        bodies=cutter.bodies,
        reached=named(reached),
        passed=frozenset((aliases.get(c, c).split(".")[-1], slot, n) for c, slot, n in passed)
        | {(c, slot, aliases[n].split(".")[-1]) for c, slot, n in passed if n in aliases},
        calls={name: named(loads) for name, loads in cutter.calls.items()},
        stores=cutter.stores,
        imports=frozenset(imports),
    )


class _Cutter(ast.NodeTransformer):
    """Cuts each non-dunder function's body to its docstring, noting what the body was."""

    def __init__(self) -> None:
        self.scope: list[str] = []
        self.bodies: dict[str, str] = {}
        self.calls: dict[str, frozenset[str]] = {}
        self.stores: dict[str, frozenset[str]] = {}

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()
        return node

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        if node.name.startswith("__") and node.name.endswith("__"):
            return node  # run implicitly: its body is part of what importing does
        name = ".".join([*self.scope, node.name])
        self.bodies[name] = _sha(ast.dump(ast.Module(body=node.body, type_ignores=[])))
        loads, passed = _scan(node.body)
        uses = loads | {n for _, _, n in passed}
        self.calls[name] = self.calls.get(name, frozenset()) | uses
        if not self.scope:  # a plain function: which arguments it only stores
            params = [*node.args.posonlyargs, *node.args.args]
            self.stores[name] = frozenset(
                slot for i, p in enumerate(params) if p.arg not in uses for slot in (str(i), p.arg)
            ) | frozenset(p.arg for p in node.args.kwonlyargs if p.arg not in uses)
        first = node.body[0]
        docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
        node.body = [first] if docstring else [ast.Pass()]
        return node

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function


def _scan(nodes: Iterable[ast.AST]) -> tuple[frozenset[str], frozenset[Passed]]:
    """Names and attributes loaded; and names passed bare to other callees, set apart.

    A direct argument of a storing callee is neither. A name passed bare to another callee
    (``_model_config(models.mlp)``) is reached unless the callee is a project function that
    only stores that parameter (see :func:`reachable`). A script's ``if __name__ ==
    "__main__":`` block does not run on import and is left out.
    """
    every = [n for top in nodes for n in ast.walk(top)]
    skipped = {
        id(n)
        for node in every
        if isinstance(node, ast.If) and _is_main_test(node.test)
        for n in ast.walk(node)
    }
    every = [n for n in every if id(n) not in skipped]
    stored: set[int] = set()
    passed: set[Passed] = set()
    for node in every:
        if not isinstance(node, ast.Call):
            continue
        callee = _callee(node)
        slots = [
            *((str(i), a) for i, a in enumerate(node.args)),
            *((k.arg, k.value) for k in node.keywords),
        ]
        for slot, arg in slots:
            if callee in _STORING:
                stored.update(
                    id(n) for n in ast.walk(arg) if isinstance(n, ast.Name | ast.Attribute)
                )
            elif callee and slot and isinstance(arg, ast.Name | ast.Attribute):
                stored.update(id(n) for n in ast.walk(arg))
                passed.add((callee, slot, arg.id if isinstance(arg, ast.Name) else arg.attr))
                if isinstance(arg, ast.Attribute):  # `models.mlp`: `models` is loaded too
                    stored.discard(id(arg.value))
    found = set()
    for node in every:
        if id(node) in stored:
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            found.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            found.add(node.attr)
    return frozenset(found), frozenset(passed)


def _is_main_test(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def _callee(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def same_declarations(old: Mapping[str, Outline], new: Mapping[str, Outline]) -> bool:
    """Whether importing the modules ``new`` declares what importing ``old`` did.

    Both map a file's path to its outline. They must hold the same files, with equal
    digests, and no function whose body differs may be reachable from import-time code
    (directly, or through the bodies of functions import time calls).
    """
    if old.keys() != new.keys() or any(old[p].digest != new[p].digest for p in new):
        return False
    changed: set[str] = set()
    for path, item in new.items():
        before = old[path].bodies
        for name in before.keys() | item.bodies.keys():
            if before.get(name) != item.bodies.get(name):
                changed.update(name.split("."))  # a method: its class and its own name
    return not changed or not (changed & reachable(new.values()))


def reachable(outlines: Iterable[Outline]) -> frozenset[str]:
    """Every name import-time code may reach, following the bodies of what it calls.

    A name passed bare to a project function is reached unless every function of that
    name only stores that parameter (passes it to a storing callee, never calls it).
    """
    items = list(outlines)
    bodies: dict[str, set[str]] = {}
    stores: dict[str, frozenset[str]] = {}
    for item in items:
        for name, loads in item.calls.items():
            for part in name.split("."):  # reaching a class reaches its methods
                bodies.setdefault(part, set()).update(loads)
        for name, slots in item.stores.items():
            stores[name] = stores[name] & slots if name in stores else slots
    reached: set[str] = set().union(*(item.reached for item in items))
    for item in items:
        for callee, slot, name in item.passed:
            reached.add(callee)
            if slot not in stores.get(callee, frozenset()):
                reached.add(name)
    todo = list(reached)
    while todo:
        for name in bodies.get(todo.pop(), ()):
            if name not in reached:
                reached.add(name)
                todo.append(name)
    return frozenset(reached)
