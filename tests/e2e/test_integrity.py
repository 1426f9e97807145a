"""Damaged artifacts are never used silently; no link leads out of the store; secrets stay out."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.core import lockfile, paths
from tests.e2e.support import FAST, Cli, make_cli, status

STATE = Path(".pipeline/artifacts/model/v0/state_dict.pt")


def _flip_a_byte(path: Path, keep_mtime: bool = False) -> None:
    st = path.stat()
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_mtime:  # size and mtime as before: only a full re-hash can tell
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_flipped_byte_is_seen_and_rebuilt_by_rerunning_its_stage(
    cli: Cli, workspace: Path
) -> None:
    digest = lockfile.read(workspace / paths.LOCK_NAME).stages["train"].outputs["model"].digest
    _flip_a_byte(workspace / STATE)
    found = status(cli)
    assert found["train"]["state"] == "stale"
    assert found["train"]["reasons"] == [
        "output model v0 is not intact (corrupt state_dict.pt (content differs from its digest))"
    ]
    # Pinning the damaged version is refused, naming it and the fix.
    only = cli("run", "evaluate", "--only", check=False)
    assert only.returncode == 2
    assert only.stderr == (
        "error: `--only` uses `model` v0, which is not intact in the store (corrupt "
        "state_dict.pt (content differs from its digest)); rebuild it with "
        "`python -m pipeline run --force train`\n"
    )
    # The documented behaviour of `run`: the stage that made it runs again, and the same
    # bits repair the version in place.
    rebuilt = cli("run", *FAST)
    assert "train: run (output model v0 is not intact" in rebuilt.stdout
    assert (
        lockfile.read(workspace / paths.LOCK_NAME).stages["train"].outputs["model"].digest == digest
    )
    assert cli("lock", "verify").returncode == 0
    assert all(s["state"] == "fresh" for s in status(cli).values())


def test_lock_verify_rehashes_what_the_stat_cache_cannot_see(cli: Cli, workspace: Path) -> None:
    cli("status")  # the copy's files enter the stat cache
    _flip_a_byte(workspace / STATE, keep_mtime=True)
    assert status(cli)["train"]["state"] == "fresh"  # same size, mtime and inode
    result = cli("lock", "verify", check=False)
    assert result.returncode == 1
    assert "BAD  train: model:v0: corrupt state_dict.pt (content differs from its digest)\n" in (
        result.stdout
    )
    fix = "python -m pipeline run --force train"
    assert result.stdout.endswith(
        "1 of 4 pinned artifact versions have problems; rebuild them (the store rewrites "
        f"them from the rebuilt bits) with `{fix}`\n"
    )
    # From now on every check sees the damage, and the fix it names repairs it.
    assert status(cli)["train"]["state"] == "stale"
    cli(*fix.split()[3:], *FAST)
    assert cli("lock", "verify").returncode == 0
    assert all(s["state"] == "fresh" for s in status(cli).values())


def test_a_symlink_out_of_the_store_is_never_followed(
    cli: Cli, workspace: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.pt"
    outside.write_bytes((workspace / STATE).read_bytes())  # even the same bytes
    (workspace / STATE).unlink()
    (workspace / STATE).symlink_to(outside)
    found = status(cli)
    assert found["train"]["reasons"] == [
        "output model v0 is not intact (state_dict.pt are links or special files, not plain files)"
    ]
    folder = workspace / ".pipeline" / "artifacts" / "model"
    (folder / "v0").rename(tmp_path / "v0")
    (folder / "v0").symlink_to(tmp_path / "v0")  # the whole version folder, elsewhere
    assert status(cli)["train"]["reasons"] == [
        "output model v0 is not intact (its folder is missing, or a link out of the store)"
    ]


def test_secrets_in_the_environment_are_written_nowhere(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    secrets = {
        "WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567",
        "HF_TOKEN": "hf_secretsecretsecretsecret",
        "MY_PASSWORD": "correct-horse-battery-staple",
    }
    cli = make_cli(workspace)
    result = cli("run", *FAST, env=secrets)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]  # workspace, HOME, W&B dirs
    assert any(p.suffix == ".wandb" for p in written)  # W&B's offline record is among them
    assert any(p.name == "config.yaml" and ".hydra" in p.parts for p in written)
    for path in written:
        data = path.read_bytes()
        for name, value in secrets.items():
            assert value.encode() not in data, (name, path)
    for value in secrets.values():
        assert value not in result.stdout + result.stderr
