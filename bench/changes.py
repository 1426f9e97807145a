"""Benchmark 6: the first `status` and `run` after a change, against `dvc status` on the same.

What a researcher sees after every edit or `git pull`: a file touched (same bytes), one
stage's code edited inside its function, and another lock checked out (the lock of a run
with another `evaluate.batch_size`, whose versions the store holds). Before each timing
both workspaces are settled (the command answered once), then the change is made anew in
both, so that no timed answer is a repeat of the one before.
"""

from __future__ import annotations

import ast
import os
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench import cases
from bench import harness as h
from bench.harness import Result, Settings

# (row, change, our command): each row is timed against `dvc status` after the same change.
ROWS = (
    ("touch_status", "touch", "status"),
    ("touch_run", "touch", "run"),
    ("edit_status", "edit", "status"),
    ("checkout_status", "checkout", "status"),
    ("checkout_run", "checkout", "run"),
)
_WHAT = {
    "touch": "a stage file touched",
    "edit": "one stage's code edited",
    "checkout": "another lock checked out",
}
_OTHER_BATCH = 128  # evaluate.batch_size of the second lock (the default is 256)


def after_changes(settings: Settings) -> list[Result]:
    """5 rows: `status`/`run` after each change, medians side by side with `dvc status`."""
    results = {
        row: Result(
            f"after_{row}",
            f"6. `{command}` after {_WHAT[change]} vs `dvc status`",
            "<= 0.35",
            limit=0.35,
        )
        for row, change, command in ROWS
    }
    pair = cases._Pair("changes", settings)
    try:
        _setup(pair, settings)
        edits = iter(range(1_000_000))
        for i in range(settings.repeat):
            for row, change, command in ROWS:
                # Settled first: the same command answered once before the change.
                pair.time_ours(command)
                if pair.dvc is not None:
                    pair.time_dvc("status")
                n = next(edits)
                for folder in _folders(pair):
                    _apply(folder, change, n)
                order: list[tuple[Callable[[], float], list[float]]] = [
                    (partial(pair.time_ours, command), results[row].ours)
                ]
                if pair.dvc is not None:
                    order.append((partial(pair.time_dvc, "status"), results[row].dvc))
                for timer, into in order if i % 2 == 0 else order[::-1]:
                    into.append(timer())
                if change == "edit":  # back to the code the locks were made with
                    for folder in _folders(pair):
                        edit_body(folder / "stages" / "evaluate.py", "evaluate", None)
        _check_answers(pair)
        if settings.profiles:
            for row, change, command in ROWS:
                if results[row].met is False:
                    _apply(pair.ours, change, next(edits))
                    target = settings.profiles / f"{results[row].name}.txt"
                    h.profile(
                        ["pipeline", command], pair.ours, pair.env, target, results[row].title
                    )
    finally:
        pair.close()
    return list(results.values())


def _folders(pair: cases._Pair) -> list[Path]:
    return [pair.ours] if pair.dvc is None else [pair.ours, pair.dvc]


def _setup(pair: cases._Pair, settings: Settings) -> None:
    """Both pipelines run twice (the second with another batch size); both locks kept."""
    first = cases._ours_overrides(settings)
    h.run(h.ours("run", *first), pair.ours, pair.env)
    shutil.copy(pair.ours / "dvc_free_lock.yaml", pair.ours / ".lock-a")
    h.run(h.ours("run", f"evaluate.batch_size={_OTHER_BATCH}"), pair.ours, pair.env)
    shutil.copy(pair.ours / "dvc_free_lock.yaml", pair.ours / ".lock-b")
    pair.setup_dvc(lambda f: cases._write_default_dvc(f, settings))
    if pair.dvc is not None:
        h.run(h.dvc("repro"), pair.dvc, pair.env)
        for name in ("dvc.lock", "params.yaml"):
            shutil.copy(pair.dvc / name, pair.dvc / f".{name}-a")
        params = (pair.dvc / "params.yaml").read_text(encoding="utf-8")
        other = params.replace("batch_size: 256", f"batch_size: {_OTHER_BATCH}")
        (pair.dvc / "params.yaml").write_text(other, encoding="utf-8")
        h.run(h.dvc("repro"), pair.dvc, pair.env)
        for name in ("dvc.lock", "params.yaml"):
            shutil.copy(pair.dvc / name, pair.dvc / f".{name}-b")


def _apply(folder: Path, change: str, n: int) -> None:
    """Make one change in a workspace; ``n`` makes each edit and each checkout new."""
    if change == "touch":
        os.utime(folder / "stages" / "train.py")
    elif change == "edit":
        edit_body(folder / "stages" / "evaluate.py", "evaluate", f"_bench_edit = {n}")
    else:  # the other of the two locks
        dvc = (folder / "dvc.yaml").exists()
        lock = folder / ("dvc.lock" if dvc else "dvc_free_lock.yaml")
        first = folder / (".dvc.lock-a" if dvc else ".lock-a")
        side = "b" if lock.read_bytes() == first.read_bytes() else "a"
        if dvc:
            for name in ("dvc.lock", "params.yaml"):
                shutil.copy(folder / f".{name}-{side}", folder / name)
        else:
            shutil.copy(folder / f".lock-{side}", lock)


def edit_body(path: Path, function: str, statement: str | None) -> None:
    """Put ``statement`` first in ``function``'s body (after its docstring), or none."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    lines = [line for line in lines if "_bench_edit =" not in line]
    if statement is None:
        path.write_text("".join(lines), encoding="utf-8")
        return
    tree = ast.parse("".join(lines))
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    first = node.body[0]
    at = first.end_lineno if isinstance(first, ast.Expr) else first.lineno - 1
    assert at is not None
    indent = " " * node.body[-1].col_offset
    lines.insert(at, f"{indent}{statement}\n")
    path.write_text("".join(lines), encoding="utf-8")


def _check_answers(pair: cases._Pair) -> None:
    """Our answers are the tool's, not errors: status after an edit names the edit."""
    _apply(pair.ours, "edit", -1)
    out = h.run(h.ours("status"), pair.ours, pair.env)
    if "code changed: stages/evaluate.py" not in out:
        raise RuntimeError(f"`status` after an edit did not say so:\n{out}")
