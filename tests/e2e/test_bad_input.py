"""Bad input: one line naming the thing and the fix, exit code 2, and nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.support import Cli, env_for, snapshot

LOCK = "dvc_free_lock.yaml"


def _edit_lock(old: str, new: str) -> Callable[[Path], None]:
    def edit(workspace: Path) -> None:
        path = workspace / LOCK
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))

    return edit


def _drop_model(workspace: Path) -> None:
    folder = workspace / ".pipeline" / "artifacts" / "model" / "v0"
    shutil.rmtree(folder)


def _write_lock(data: bytes) -> Callable[[Path], None]:
    def write(workspace: Path) -> None:
        (workspace / LOCK).write_bytes(data)

    return write


def _lock_as_folder(workspace: Path) -> None:
    (workspace / LOCK).unlink()
    (workspace / LOCK).mkdir()


def _index(edit: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def damage(workspace: Path) -> None:
        index = workspace / ".pipeline" / "index.sqlite"
        index.write_bytes(edit(index.read_bytes()))

    return damage


def _own_stages(edit: Callable[[Path], None]) -> Callable[[Path], None]:
    """The workspace gets its own copy of the stages (it comes first on `sys.path`), edited."""

    def setup(workspace: Path) -> None:
        import stages

        shutil.copytree(
            Path(stages.__file__).parent,
            workspace / "stages",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        edit(workspace / "stages")

    return setup


def _append(name: str, text: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        with (folder / name).open("a") as fh:
            fh.write(text)

    return edit


def _replace(name: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        source = (folder / name).read_text()
        assert old in source
        (folder / name).write_text(source.replace(old, new, 1))

    return edit


def _empty(workspace: Path) -> None:
    for entry in workspace.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _range(key: str, value: str, reason: str, owner: str = "stages.train.train") -> str:
    return f"error: `{key}={value}`: {reason} (declared by `{owner}`)"


LONG_KEY = "k" * 10_000

# (what, setup of the workspace, command, the start of the one line on stderr)
CASES = [
    (
        "unknown stage",
        None,
        ("run", "trian"),
        "error: unknown stage `trian`; did you mean `train`?",
    ),
    (
        "unknown override key",
        None,
        ("run", "train.lrr=1"),
        "error: unknown config key `train.lrr`; did you mean `train.lr`?",
    ),
    (
        "wrong value type",
        None,
        ("run", "train.epochs=1.5"),
        "error: `train.epochs=1.5`: expected a value of type integer, got `1.5`",
    ),
    (
        "malformed YAML in the lock",
        _edit_lock("schema: 1\n", "schema: 1: 2\n"),
        ("status",),
        f"error: `{LOCK}:1` is not valid YAML (mapping values are not allowed",
    ),
    (
        "a lock schema newer than this version",
        _edit_lock("schema: 1\n", "schema: 2\n"),
        ("run",),
        f"error: `{LOCK}` has schema 2, this version reads schema 1; upgrade the tool",
    ),
    (
        "a pinned version missing from the store",
        _drop_model,
        ("run", "evaluate", "--only"),
        "error: `--only` uses `model` v0, which is not intact in the store (its folder is "
        "missing, or a link out of the store); rebuild it with "
        "`python -m pipeline run --force train`",
    ),
    (
        "--use naming an unknown artifact",
        None,
        ("run", "evaluate", "--use", "modle:v0"),
        "error: `--use modle:v0`: no artifact `modle`; did you mean `model`?",
    ),
    (
        "--use naming an unknown version",
        None,
        ("run", "evaluate", "--use", "model:v7"),
        "error: `--use model:v7`: the store has no version `v7` of `model`",
    ),
    (
        "an alias with `..` and `/`",
        None,
        ("run", "evaluate", "--use", "model:../../v0"),
        "error: `--use model:../../v0`: artifact names, versions and aliases are letters",
    ),
    (
        "an absolute path as artifact name",
        None,
        ("run", "evaluate", "--use", "/etc/passwd:v0"),
        "error: `--use /etc/passwd:v0`: artifact names, versions and aliases are letters",
    ),
    (
        "an artifact name with `..` in the lock",
        _edit_lock("name: model\n", "name: ../../model\n"),
        ("run",),
        "`stages.evaluate.inputs.model.name` should be a name of letters, digits",
    ),
    (
        "an artifact name with NUL in the lock",
        _edit_lock("name: model\n", 'name: "model\\0"\n'),
        ("run",),
        "`stages.evaluate.inputs.model.name` should be a name of letters, digits",
    ),
    (
        "a dataset root that does not exist, download off",
        None,
        ("run", "prepare_data.dataset=mnist", "prepare_data.dataset.root=nowhere"),
        "error: stage `prepare_data`: dataset root `nowhere` does not exist and download is off; "
        "set `prepare_data.dataset.root=DIR`",
    ),
    (
        "an unknown torchvision model name",
        None,
        ("run", "train.model=torchvision", "train.model.name=resnet999"),
        "error: stage `train`: `resnet999` is not a torchvision classifier; did you mean",
    ),
    (
        "an unknown torchvision model name, in a dry run",
        None,
        ("run", "--dry-run", "train.model=torchvision", "train.model.name=resnet999"),
        "error: stage `train`: `resnet999` is not a torchvision classifier; did you mean",
    ),
    (
        "a value out of range, in a dry run",
        None,
        ("run", "--dry-run", "train.epochs=0"),
        _range("train.epochs", "0", "input should be greater than or equal to 1"),
    ),
    (
        "pull given a config override",
        None,
        ("pull", "train.lr=0.1"),
        "error: `pull` takes a stage and `wandb.entity=` / `wandb.project=`, not `train.lr=0.1`",
    ),
    (
        "pull without W&B credentials",
        None,
        ("pull",),
        "error: no W&B credentials: run `wandb login` or set WANDB_API_KEY, then rerun "
        "`python -m pipeline pull`",
    ),
    (
        "sync given a project",
        None,
        ("sync", "wandb.project=other"),
        "error: `sync` uploads every offline run to the project it was recorded in",
    ),
    (
        "run --pull with --frozen",
        None,
        ("run", "--pull", "--frozen"),
        "error: `--frozen` reproduces the lock as it is",
    ),
    (
        "an empty dataset",
        None,
        ("run", "prepare_data.dataset=mnist1d", "prepare_data.dataset.num_samples=0"),
        _range(
            "prepare_data.dataset.num_samples",
            "0",
            "input should be greater than or equal to 1",
            "stages.data.mnist1d",
        ),
    ),
    (
        "a stage's block twice in the lock (a merge kept both)",
        lambda ws: (ws / LOCK).write_text(
            (ws / LOCK).read_text() + (ws / LOCK).read_text().split("stages:\n", 1)[1]
        ),
        ("status",),
        "appears twice); fix it",
    ),
    (
        "lineage --html into a folder that does not exist",
        None,
        ("lineage", "model:v0", "--html", "nowhere/page.html"),
        "does not exist; create it or write the page elsewhere",
    ),
    (
        "lineage --html onto a folder",
        lambda ws: (ws / "pages").mkdir(),
        ("lineage", "model:v0", "--html", "pages"),
        "is a folder; name a file in it",
    ),
    (
        "an unknown key recorded in the lock",
        _edit_lock("- epochs=2\n", "- lrr=2\n"),
        ("status",),
        "error: unknown config key `train.lrr`; did you mean `train.lr`? (`python -m stages.train "
        "--help` lists the keys); the lock's `train` block recorded it: drop what it recorded "
        "with `python -m pipeline run train --reset train`",
    ),
    (
        "a lock that is binary",
        _write_lock(b"\x89PNG\r\n\x1a\n\x00\xff\xfe"),
        ("status",),
        f"error: `{LOCK}` is not UTF-8 text",
    ),
    (
        "a lock in UTF-16",
        _write_lock("schema: 1\nstages: {}\n".encode("utf-16")),
        ("status",),
        f"error: `{LOCK}` is not UTF-8 text",
    ),
    (
        "a lock that is a folder",
        _lock_as_folder,
        ("status",),
        f"error: `{LOCK}` is a folder, not a lock file",
    ),
    (
        "an index that is garbage",
        _index(lambda data: b"not a database, " * 64),
        ("status",),
        "error: the store's index `.pipeline/index.sqlite` is damaged (file is not a database)",
    ),
    (
        "a truncated index",
        _index(lambda data: data[: len(data) // 3]),
        ("run",),
        "error: the store's index `.pipeline/index.sqlite` is damaged (",
    ),
    (
        "a stage module with a syntax error",
        _own_stages(_append("train.py", "\ndef broken(:\n")),
        ("status",),
        "stages/train.py:",
    ),
    (
        "STAGES holding something that is not a StageSpec",
        _own_stages(_append("__init__.py", "\nSTAGES = ('train',)\n")),
        ("status",),
        "error: `stages.STAGES` holds str `'train'`, not a StageSpec",
    ),
    (
        "a learning rate that is not a number",
        None,
        ("run", "train.lr=nan"),
        _range("train.lr", "nan", "input should be a finite number"),
    ),
    (
        "a negative learning rate",
        None,
        ("status", "train.lr=-1"),
        _range("train.lr", "-1.0", "input should be greater than 0"),
    ),
    (
        "zero epochs",
        None,
        ("run", "train.epochs=0"),
        _range("train.epochs", "0", "input should be greater than or equal to 1"),
    ),
    (
        "a batch size of zero",
        None,
        ("run", "train.batch_size=0"),
        _range("train.batch_size", "0", "input should be greater than or equal to 1"),
    ),
    (
        "zero threads",
        None,
        ("run", "train.threads=0"),
        _range("train.threads", "0", "input should be greater than or equal to 1"),
    ),
    (
        "a device torch does not have",
        None,
        ("run", "train.device=tpu"),
        _range("train.device", "tpu", "input should be 'auto', 'cpu' or 'cuda'"),
    ),
    (
        "a model value out of its range",
        None,
        ("run", "train.model=mlp", "train.model.dropout=1.5"),
        _range("train.model.dropout", "1.5", "input should be less than 1", "stages.models.mlp"),
    ),
    (
        "a key added with + that the stage does not take",
        None,
        ("status", "+train.foo=1"),
        "error: unknown config key `train.foo`",
    ),
    (
        "a bad value recorded in the lock",
        _edit_lock("- epochs=2\n", "- lr=nan\n"),
        ("run",),
        _range("train.lr", "nan", "input should be a finite number")
        + "; the lock's `train` block recorded it: drop what it recorded with "
        "`python -m pipeline run train --reset train`",
    ),
    (
        "a bad value in a sweep",
        None,
        ("run", "-m", "train.lr=0.01,-1"),
        _range("train.lr", "-1.0", "input should be greater than 0"),
    ),
    (
        "a key of 10,000 characters",
        None,
        ("status", f"train.{LONG_KEY}=1"),
        f"error: unknown config key `train.{LONG_KEY[:40]}...` (10000 characters)",
    ),
    (
        "a resolver as a value (${now:})",
        None,
        ("run", "train.seed=${now:%s}"),
        "error: override `train.seed=${now:%s}` holds an interpolation",
    ),
    (
        "--use on an empty workspace",
        _empty,
        ("run", "evaluate", "--use", "model:latest"),
        "error: `--use model:latest`: the store has no version `latest` of `model`",
    ),
    (
        "two stages with one name",
        _own_stages(_replace("__init__.py", '    "plot",\n', '    "plot",\n    "plot",\n')),
        ("status",),
        "error: `stages.STAGES` lists two stages named `plot`",
    ),
]


@pytest.mark.parametrize(("what", "setup", "args", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    cli: Cli,
    workspace: Path,
    what: str,
    setup: Callable[[Path], None] | None,
    args: tuple[str, ...],
    message: str,
) -> None:
    cli("status", check=False)  # a copied workspace re-hashes once (new inodes): not a write
    if setup is not None:
        setup(workspace)
    before = snapshot(workspace)
    result = cli(*args, check=False)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert snapshot(workspace) == before


def _namespaces() -> bool:
    """Whether this machine lets us mount file systems in a user namespace (unshare -rm)."""
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


needs_namespaces = pytest.mark.skipif(
    not _namespaces(), reason="needs `unshare -rm` to mount a read-only or a full file system"
)


_SNAPSHOT = (
    "import json, pathlib, sys; from tests.e2e.support import snapshot; "
    "pathlib.Path(sys.argv[1]).write_text(json.dumps(snapshot(pathlib.Path('.'))))"
)


def _in_namespace(script: str, workspace: Path) -> subprocess.CompletedProcess[str]:
    """Run a shell script as root of a new user and mount namespace (mounts vanish after)."""
    return subprocess.run(
        ["unshare", "-rm", "sh", "-euc", script],
        env={
            **env_for(workspace),
            "PYTHON": sys.executable,
            "SNAPSHOT": _SNAPSHOT,
            "PYTHONPATH": str(Path(__file__).parents[2]),
        },
        capture_output=True,
        text=True,
        timeout=600,
    )


@needs_namespaces
def test_a_read_only_workspace_is_refused_before_anything_runs(workspace: Path) -> None:
    before = snapshot(workspace)
    result = _in_namespace(
        f'mount --bind "{workspace}" "{workspace}"\n'
        f'mount -o remount,bind,ro "{workspace}"\n'
        f'cd "{workspace}" && exec "$PYTHON" -m pipeline run train.lr=0.5',
        workspace,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"error: workspace `{workspace}` is not writable; make it writable or run in another "
        "folder (`--workspace DIR`)\n"
    )
    assert snapshot(workspace) == before


@needs_namespaces
def test_a_disk_filling_up_while_writing_an_artifact(workspace: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    copy = disk / "ws"
    # A 16 MiB file system holding the workspace, filled up to 1 MiB: the dataset of 20,000
    # MNIST-1D signals (3.2 MB) cannot be written.
    script = f"""
mount -t tmpfs -o size=16m tmpfs "{disk}"
cp -a "{workspace}" "{copy}"
cd "{copy}"
"$PYTHON" -m pipeline status > /dev/null
free=$(df --output=avail -B1 . | tail -1)
head -c $((free - 1024 * 1024)) /dev/zero > "{disk}/filler"
snap() {{ "$PYTHON" -c "$SNAPSHOT" "{tmp_path}/$1.json"; }}
snap before
set +e
"$PYTHON" -m pipeline run prepare_data.dataset=mnist1d prepare_data.dataset.num_samples=20000
echo "exit $?" >&2
snap after
"""
    result = _in_namespace(script, workspace)
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "exit 2", result.stderr
    assert lines[-2] == (
        "error: stage `prepare_data` ran out of disk space writing its outputs; free space on "
        "the disk holding the workspace, or use a workspace on another disk "
        "(`--workspace DIR`), and rerun (stages that finished are kept)"
    )
    assert "Traceback" not in result.stderr
    before = json.loads((tmp_path / "before.json").read_text())
    after = json.loads((tmp_path / "after.json").read_text())
    # The lock and every artifact are as they were, and nothing is left half-written. The
    # failed attempt itself is recorded (the run index, Hydra's log folder, W&B's run).
    kept = (LOCK, ".pipeline/artifacts/", ".pipeline/objects/", ".pipeline/tmp/")
    assert {k: v for k, v in after.items() if k.startswith(kept)} == {
        k: v for k, v in before.items() if k.startswith(kept)
    }


def test_a_closed_pipe_ends_the_command_quietly(cli: Cli, workspace: Path) -> None:
    """`python -m pipeline lineage ... | head`: no traceback when the reader stops reading."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "lineage", "model:v0"],
        cwd=workspace,
        env=env_for(workspace),
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    os.close(write)
    assert done.returncode == 141, done.stderr
    assert done.stderr == ""
