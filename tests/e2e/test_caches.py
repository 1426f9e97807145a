"""Caches answer faster, never differently: the cases a hostile user found, each a test."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import stages
from pipeline.core import lockfile, paths
from tests.e2e.support import FAST, Cli, make_cli, status

CACHE = Path(".pipeline/lock.json")
DECLARED = Path(".pipeline/declared.json")


def _uncached(workspace: Path, scratch: Path, *args: str) -> str:
    """What a command prints in a copy of the workspace with every cache deleted."""
    copy = scratch / "uncached"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(workspace, copy, symlinks=True)
    shutil.rmtree(copy / ".pipeline" / "memo", ignore_errors=True)
    (copy / CACHE).unlink(missing_ok=True)
    (copy / DECLARED).unlink(missing_ok=True)
    with sqlite3.connect(copy / ".pipeline" / "index.sqlite") as db:
        db.execute("DELETE FROM stat_cache")
    return make_cli(copy)(*args).stdout


def test_a_copied_workspace_answers_from_its_own_files(
    cli: Cli, workspace: Path, tmp_path: Path
) -> None:
    cli("status")  # the original's memo: it must never speak for the copy
    copy = tmp_path / "copy"
    shutil.copytree(workspace, copy, symlinks=True, copy_function=shutil.copy2)  # `cp -a`
    in_copy = make_cli(copy)
    in_copy("run", "train", "train.epochs=1")
    found = json.loads(in_copy("status", "--json").stdout)["stages"]
    assert found["train"]["state"] == "fresh"
    assert lockfile.read(copy / paths.LOCK_NAME).stages["train"].outputs["model"].version == "v1"
    assert "(model v1)" in in_copy("status").stdout
    (copy / paths.LOCK_NAME).unlink()
    assert status(in_copy)["train"]["state"] == "never-ran"
    assert "model v0" in cli("status").stdout  # the original is untouched


def test_an_override_that_reads_the_environment_is_refused(cli: Cli, workspace: Path) -> None:
    before = (workspace / paths.LOCK_NAME).read_text()
    for command in ("run", "status"):
        result = cli(command, "train", "train.epochs=${oc.env:EP}", check=False, env={"EP": "5"})
        assert result.returncode == 2
        assert result.stderr.startswith("error: override `train.epochs=${oc.env:EP}` holds an ")
        assert "`train.epochs=$EP`" in result.stderr and result.stderr.count("\n") == 1
    assert (workspace / paths.LOCK_NAME).read_text() == before


def _plant(workspace: Path, edit) -> None:
    """Edit the parsed lock as a document (its blocks are kept as JSON text)."""
    saved = json.loads((workspace / CACHE).read_text())
    doc = {"stages": {name: json.loads(raw) for name, raw in saved["blocks"].items()}}
    edit(doc)
    found = doc["stages"]
    saved["blocks"] = (
        {k: json.dumps(v) for k, v in found.items()} if isinstance(found, dict) else found
    )
    (workspace / CACHE).write_text(json.dumps(saved))


def test_a_parsed_lock_that_fails_the_locks_checks_is_ignored(
    cli: Cli, workspace: Path, tmp_path: Path
) -> None:
    cli("status")
    text = (workspace / paths.LOCK_NAME).read_text()
    plants = [
        lambda doc: doc["stages"]["train"]["outputs"]["model"].update(name="../../../../etc"),
        lambda doc: doc["stages"]["train"].update(inputs=5),
        lambda doc: doc.update(stages=[1, 2]),
        lambda doc: doc["stages"]["evaluate"]["outputs"]["evaluation"].update(size="big"),
    ]
    for plant in plants:
        _plant(workspace, plant)
        shutil.rmtree(workspace / ".pipeline" / "memo")
        result = cli("status", "--json", check=False)
        assert result.returncode == 0 and not result.stderr
        assert result.stdout == _uncached(workspace, tmp_path, "status", "--json")
        assert (workspace / paths.LOCK_NAME).read_text() == text


def test_a_value_planted_in_the_parsed_lock_never_reaches_the_lock_file(
    cli: Cli, workspace: Path
) -> None:
    cli("status")
    before = lockfile.read(workspace / paths.LOCK_NAME).stages["evaluate"]
    _plant(workspace, lambda doc: doc["stages"]["evaluate"]["metrics"].update(accuracy=1.0))
    cli("run", "train", "--force", *FAST)
    after = lockfile.read(workspace / paths.LOCK_NAME).stages["evaluate"]
    assert after == before


def test_every_answer_equals_the_answer_without_caches_after_a_touch(
    cli: Cli, workspace: Path, tmp_path: Path
) -> None:
    cli("status")
    (workspace / paths.LOCK_NAME).touch()  # new mtime, same bytes: the memo may still answer
    for args in (("status", "--json"), ("run", "--dry-run", "--json")):
        assert cli(*args).stdout == _uncached(workspace, tmp_path, *args)


_STEPS = (
    "touch code",
    "edit code",
    "edit a function body",
    "edit a declaration",
    "touch lock",
    "override",
    "reset",
    "delete caches",
    "delete .pipeline memo",
    "move workspace",
    "check out the first lock",
    "damage the model",
    "run",
)


@settings(max_examples=4, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(_STEPS), min_size=3, max_size=4))
def test_answers_with_caches_equal_answers_without_them(steps: list[str]) -> None:
    """After each thing a user does, `status` and `run --dry-run` answer as with no cache."""
    root = Path(tempfile.mkdtemp(prefix="caches-"))
    try:
        workspace = root / "ws0"
        shutil.copytree(
            Path(stages.__file__).parent,
            workspace / "stages",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        make_cli(workspace)("run", *FAST)
        shutil.copy2(workspace / paths.LOCK_NAME, root / "first.yaml")
        for number, step in enumerate(steps):
            workspace = _do(step, workspace, root, number)
            cli = make_cli(workspace)
            for args in (("status", "--json"), ("run", "--dry-run", "--json")):
                cli(*args)  # the first answer records the caches the second one may use
                assert cli(*args).stdout == _uncached(workspace, root, *args), (steps, step)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _do(step: str, workspace: Path, root: Path, number: int) -> Path:
    cli, code = make_cli(workspace), workspace / "stages" / "evaluate.py"
    if step == "touch code":
        code.touch()
    elif step == "edit code":
        code.write_text(code.read_text() + f"\n# edit {number}\n")
    elif step in ("edit a function body", "edit a declaration"):
        _edit(workspace, step, number)
    elif step == "touch lock":
        (workspace / paths.LOCK_NAME).touch()
    elif step == "override":
        cli("run", "train", "train.epochs=1")
    elif step == "reset":
        cli("run", "--reset", "train", *FAST)
    elif step == "delete caches":
        (workspace / CACHE).unlink(missing_ok=True)
        (workspace / DECLARED).unlink(missing_ok=True)
    elif step == "delete .pipeline memo":
        shutil.rmtree(workspace / ".pipeline" / "memo", ignore_errors=True)
    elif step == "check out the first lock":  # as `git checkout`: other bytes, a new mtime
        shutil.copyfile(root / "first.yaml", workspace / paths.LOCK_NAME)
    elif step == "damage the model":  # a plain edit: its mtime moves (see `lock verify`)
        model = next((workspace / ".pipeline" / "artifacts" / "model").glob("v*/state_dict.pt"))
        model.chmod(0o644)
        model.write_bytes(model.read_bytes()[::-1])
    elif step == "move workspace":
        moved = root / f"ws{number + 1}"
        workspace.rename(moved)
        return moved
    else:
        cli("run", *FAST)
    return workspace


def _edit(workspace: Path, what: str, number: int) -> None:
    """An edit inside `evaluate`'s body, or of its signature's default batch size."""
    code = workspace / "stages" / "evaluate.py"
    text = code.read_text()
    if what == "edit a declaration":
        text, found = re.subn(
            r"batch_size: Count = \d+", f"batch_size: Count = {200 + number}", text
        )
        assert found == 1, "the default to edit is not in evaluate.py"
    else:
        marker = '"""Write test accuracy'
        line = next(x for x in text.splitlines() if marker in x)
        text = text.replace(line, f"{line}\n    _edit = {number}", 1)
    code.write_text(text)


def test_declarations_answer_as_the_stages_do_after_each_kind_of_edit(tmp_path: Path) -> None:
    """Edits the declarations cache may answer (bodies) and must not (signatures, specs)."""
    workspace = tmp_path / "ws"
    shutil.copytree(
        Path(stages.__file__).parent,
        workspace / "stages",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    cli = make_cli(workspace)
    cli("run", *FAST)
    models = workspace / "stages" / "models.py"
    train = workspace / "stages" / "train.py"

    def replace(path: Path, old: str, new: str) -> Callable[[], None]:
        def edit() -> None:
            text = path.read_text()
            assert old in text, old
            path.write_text(text.replace(old, new, 1))

        return edit

    one, two = "= [nn.Flatten()]\n", "= [nn.Flatten(), nn.Flatten()]\n"
    cnn2 = '(models.cnn), "cnn2": _model_config(models.cnn),'
    # (an edit, whether the declarations cache may answer the first `status` after it)
    edits = [
        (lambda: _edit(workspace, "edit a function body", 1), True),
        (lambda: _edit(workspace, "edit a declaration", 2), False),  # a default
        (replace(models, "hidden: Count = 128", "hidden: Count = 64"), False),  # an option's
        (replace(models, one, two), True),  # a model's body
        (replace(train, "(models.cnn),", cnn2), False),  # a new group option
        (replace(models, two, one), True),  # and back
    ]
    for number, (edit, answered) in enumerate(edits):
        edit()
        first = cli("status", python=("-X", "importtime"))
        imported = {line.rsplit("|", 1)[-1].strip() for line in first.stderr.splitlines()}
        assert ("hydra" not in imported) is answered, number
        for args in (("status", "--json"), ("run", "--dry-run", "--json"), ("status",)):
            assert cli(*args).stdout == _uncached(workspace, tmp_path, *args), number
        assert (workspace / DECLARED).exists()
