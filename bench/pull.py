"""Pulling from W&B, against the local W&B-protocol test server (`tests/wandb_server.py`).

1. One artifact of SIZE MiB (default 1024): our pull (look up, download, check the
   digest, commit to the store) against a plain HTTP download of the same bytes from the
   same server, alternating, medians and the ratio.
2. `python -m pipeline pull` of the default pipeline's lock into a fresh clone (the lock
   only), after the default run was synced to the server.

Usage: python -m bench.pull [SIZE_MIB] [ROUNDS] [OVERRIDES...] (overrides for the run in 2)
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.wandb_server import WandbServer

CHUNK = 1 << 20


def _log_artifact(folder: Path, name: str) -> None:
    import wandb

    settings = wandb.Settings(
        console="off", x_disable_stats=True, x_disable_machine_info=True, silent=True
    )
    run = wandb.init(mode="online", project="lineage", dir=str(folder.parent), settings=settings)
    artifact = wandb.Artifact(name, type="blob")
    artifact.add_dir(str(folder), policy="immutable")
    run.log_artifact(artifact)
    run.finish()


def _plain_download(url: str, target: Path) -> None:
    with urllib.request.urlopen(url, timeout=60) as answer, open(target, "wb") as out:
        while block := answer.read(CHUNK):
            out.write(block)


def _our_pull(workspace: Path, entity: str) -> None:
    from pipeline.execution import remote
    from pipeline.execution.pull import fetch
    from pipeline.state.store import Store

    place = remote.Where(entity, "lineage")
    found = remote.lookup(place, "blob", "v0", "blob")
    assert found is not None
    store = Store(workspace)
    fetch(store, found, "blob", found.digest, "v0")
    store.close()


def artifact_pull(size_mib: int, rounds: int, server: WandbServer, tmp: Path) -> dict[str, Any]:
    """Median seconds of our pull and of a plain download of the same artifact."""
    source = tmp / "source" / "blob"
    source.mkdir(parents=True)
    with open(source / "blob.bin", "wb") as out:
        for _ in range(size_mib):
            out.write(os.urandom(CHUNK))
    _log_artifact(source, "blob")
    shutil.rmtree(source.parent)
    (version,) = server.versions("blob")
    record = server._collections[(version.entity, version.project, "blob")].versions[0]
    url = server._file_url(record, "blob.bin")
    times: dict[str, list[float]] = {"ours": [], "plain": []}
    for round_ in range(rounds):
        for side in ("ours", "plain") if round_ % 2 == 0 else ("plain", "ours"):
            place = tmp / f"{side}-{round_}"
            place.mkdir()
            began = time.perf_counter()
            if side == "ours":
                _our_pull(place, version.entity)
            else:
                _plain_download(url, place / "blob.bin")
            times[side].append(time.perf_counter() - began)
            shutil.rmtree(place)
    ours, plain = statistics.median(times["ours"]), statistics.median(times["plain"])
    return {"size_mib": size_mib, "ours_s": ours, "plain_s": plain, "ratio": ours / plain}


def _cli(workspace: Path, env: dict[str, str], *args: str) -> float:
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pipeline", "--workspace", str(workspace), *args],
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - began


def lock_pull(
    rounds: int, server: WandbServer, tmp: Path, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Median seconds of `pipeline pull` of the default lock into a fresh clone."""
    env = {**os.environ, **server.env(), "HOME": str(tmp), "WANDB_DATA_DIR": str(tmp / "data")}
    env.pop("WANDB_MODE", None)
    made = tmp / "made"
    made.mkdir()
    _cli(made, {**env, "WANDB_MODE": "offline"}, "run", *extra)
    _cli(made, env, "sync")
    times = []
    for round_ in range(rounds):
        clone = tmp / f"clone-{round_}"
        clone.mkdir()
        shutil.copy(made / "dvc_free_lock.yaml", clone)
        times.append(_cli(clone, env, "pull"))
    size = sum(f.stat().st_size for f in (made / ".pipeline" / "objects").rglob("*") if f.is_file())
    return {"pull_s": statistics.median(times), "bytes": size}


def main(size_mib: int = 1024, rounds: int = 3, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Both measurements, each against its own fresh server."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        os.environ.update(HOME=str(tmp), WANDB_DIR=str(tmp), WANDB_DATA_DIR=str(tmp / "data"))
        with WandbServer() as server:
            os.environ.update(server.env())
            artifact = artifact_pull(size_mib, rounds, server, tmp)
        with WandbServer() as server:
            whole = lock_pull(rounds, server, tmp, extra)
    return {"artifact": artifact, "lock": whole}


if __name__ == "__main__":
    numbers = [int(a) for a in sys.argv[1:3]]
    found = main(*numbers, extra=tuple(sys.argv[3:]))
    art, whole = found["artifact"], found["lock"]
    print(
        f"pull of a {art['size_mib']} MiB artifact: ours {art['ours_s']:.2f} s, plain HTTP "
        f"{art['plain_s']:.2f} s, ratio {art['ratio']:.2f}\n"
        f"`pipeline pull` of the default lock ({whole['bytes']:,} bytes): {whole['pull_s']:.2f} s"
    )
