"""The local W&B server (tests/wandb_server.py) against the real wandb client.

Online runs, `wandb sync` of offline runs and the public `wandb.Api()` all talk to a
`WandbServer` on 127.0.0.1; nothing leaves the machine.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.wandb_server import Call, WandbServer

wandb = pytest.importorskip("wandb")

FILES_V0 = {"a.txt": b"hello", "b.txt": b"world", "sub dir/c#1.txt": b"nested"}
FILES_V1 = {"a.txt": b"hello, again", "b.txt": b"world"}


def _settings() -> Any:
    return wandb.Settings(
        console="off",
        x_disable_stats=True,
        x_disable_machine_info=True,
        x_save_requirements=False,
        disable_git=True,
        disable_code=True,
        silent=True,
    )


@pytest.fixture
def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., WandbServer]]:
    """Start a server and point wandb (this process and subprocesses) at it."""
    servers: list[WandbServer] = []

    def start(**kwargs: Any) -> WandbServer:
        server = WandbServer(root=tmp_path / "server", **kwargs).start()
        servers.append(server)
        for name in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "HOME"):
            (tmp_path / name.lower()).mkdir(exist_ok=True)
            monkeypatch.setenv(name, str(tmp_path / name.lower()))
        monkeypatch.delenv("WANDB_MODE", raising=False)
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        return server

    yield start
    for server in servers:
        server.stop()


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _artifact(folder: Path, name: str = "data", **kwargs: Any) -> Any:
    artifact = wandb.Artifact(name, type="dataset", **kwargs)
    artifact.add_dir(str(folder))
    return artifact


def _init(job_type: str, mode: str = "online") -> Any:
    return wandb.init(mode=mode, project="p", job_type=job_type, settings=_settings())


def _inputs(server: WandbServer, op: str) -> list[dict[str, Any]]:
    return [c.variables.get("input", c.variables) for c in server.calls if c.op == op]


def _sent_aliases(call_input: dict[str, Any]) -> list[str]:
    return [a["alias"] for a in call_input.get("aliases") or []]


def _bytes(files: dict[str, Path]) -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in files.items()}


def _assert_clean(server: WandbServer) -> None:
    assert server.unknown_ops == []
    assert server.missing_fields == []
    assert server.errors == []


def test_online_log_then_use_by_draft_and_by_name(serve: Callable[..., WandbServer], tmp_path):
    server = serve()
    folder = _folder(tmp_path / "v0", FILES_V0)

    producer = _init("make")
    logged = _artifact(folder, metadata={"rows": 2})
    producer.log_artifact(logged)
    producer.finish()
    ops = server.ops()
    assert ops.count("CreateArtifact") == ops.count("CommitArtifact") == 1
    assert ops.count("CreateArtifactManifest") == 2
    assert (
        ops.index("CreateArtifact") < ops.index("CreateArtifactFiles") < ops.index("CommitArtifact")
    )
    puts = sorted(
        urllib.parse.unquote(c.path).rsplit("/", 1)[-1]
        for c in server.calls
        if c.method == "PUT" and "/storage/artifact/" in c.path
    )
    assert puts == ["a.txt", "b.txt", "c#1.txt"]
    (log,) = _inputs(server, "CreateArtifact")
    assert log["runName"] == producer.id
    assert log["entityName"] == server.default_entity  # no entity given to wandb.init
    assert log["enableDigestDeduplication"] is True
    assert _sent_aliases(log) == ["latest"]

    server.clear_calls()
    consumer = _init("use")
    consumer.use_artifact(_artifact(folder))  # a draft with the same content
    (use,) = _inputs(server, "CreateArtifact")
    assert use["runName"] is None  # user-created: not a log
    assert _sent_aliases(use) == ["latest"]  # use_artifact(draft) sends `latest` too
    by_name = consumer.use_artifact("p/data:v0")
    assert by_name.version == "v0"
    consumer.finish()
    (version,) = server.versions()
    assert [u["artifactID"] for u in _inputs(server, "UseArtifact")] == [version.id] * 2
    assert version == server.version("data", "v0") == server.version("data", 0)
    assert version == server.version("data", "latest", entity="lineage-team", project="p")
    assert (version.entity, version.project, version.name, version.type) == (
        "lineage-team",
        "p",
        "data",
        "dataset",
    )
    assert version.index == 0 and version.state == "COMMITTED"
    assert version.digest == logged.digest
    assert version.created_by == producer.id
    assert version.logged_by == [producer.id]
    assert version.used_by == [consumer.id]
    assert version.aliases == {"latest"}
    assert version.metadata == {"rows": 2}
    assert _bytes(version.files) == FILES_V0
    assert json.loads(version.manifest.read_text())["contents"].keys() == FILES_V0.keys()

    runs = server.runs()
    assert runs[producer.id].job_type == "make" and runs[consumer.id].job_type == "use"
    assert runs[producer.id].entity == "lineage-team" and runs[producer.id].project == "p"
    assert runs[consumer.id].state == "finished"
    _assert_clean(server)


@pytest.mark.parametrize("merge", [True, False])
def test_new_content_then_relog_of_old_content(serve: Callable[..., WandbServer], tmp_path, merge):
    server = serve(merge_aliases_on_dedup=merge)
    v0_folder = _folder(tmp_path / "v0", FILES_V0)
    v1_folder = _folder(tmp_path / "v1", FILES_V1)
    first = _init("a")
    first.log_artifact(_artifact(v0_folder))
    first.finish()
    second = _init("b")
    second.log_artifact(_artifact(v1_folder))
    second.finish()
    v0, v1 = server.versions("data")
    assert (v0.index, v1.index) == (0, 1)
    assert (v0.aliases, v1.aliases) == (set(), {"latest"})
    assert v1.created_by == second.id and _bytes(v1.files) == FILES_V1

    server.clear_calls()
    third = _init("c")
    third.log_artifact(_artifact(v0_folder), aliases=["best"])
    third.finish()
    (relog,) = _inputs(server, "CreateArtifact")
    assert sorted(_sent_aliases(relog)) == ["best", "latest"]
    assert "CommitArtifact" not in server.ops()  # a dedup hit uploads nothing

    v0, v1 = server.versions("data")  # still two versions
    assert v0.created_by == first.id
    assert v0.logged_by == [first.id, third.id]
    assert v1.logged_by == [second.id]
    if merge:
        assert (v0.aliases, v1.aliases) == ({"best", "latest"}, set())
        assert server.version("data", "latest").index == 0
    else:
        assert (v0.aliases, v1.aliases) == (set(), {"latest"})
        assert server.version("data", "best") is None
    _assert_clean(server)


def test_alias_lists_that_reach_the_server(
    serve: Callable[..., WandbServer], tmp_path, monkeypatch
):
    server = serve()
    folder = _folder(tmp_path / "v0", FILES_V0)
    run = _init("a")
    run.log_artifact(_artifact(folder), aliases=[])
    run.finish()
    # wandb.util._resolve_aliases always adds `latest`
    assert [_sent_aliases(i) for i in _inputs(server, "CreateArtifact")] == [["latest"]]

    server.clear_calls()
    import wandb.sdk.wandb_run as wandb_run

    monkeypatch.setattr(wandb_run, "_resolve_aliases", lambda aliases: list(aliases or []))
    run = _init("b")
    run.log_artifact(_artifact(folder), aliases=[])
    run.use_artifact(_artifact(folder))
    run.finish()
    assert [_sent_aliases(i) for i in _inputs(server, "CreateArtifact")] == [[], []]
    (version,) = server.versions()
    assert version.aliases == {"latest"}  # set at commit, not by the relog or the use
    _assert_clean(server)


def _sync(run: Any) -> subprocess.CompletedProcess[str]:
    folder = Path(run.settings.sync_file).parent
    return subprocess.run(
        [sys.executable, "-m", "wandb", "sync", str(folder)],
        env=dict(os.environ),
        timeout=120,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("empty_entity", ["default", "refuse"])
def test_offline_runs_synced(
    serve: Callable[..., WandbServer], tmp_path, monkeypatch, empty_entity
):
    server = serve(empty_entity=empty_entity)
    folder = _folder(tmp_path / "v0", FILES_V0)
    producer = _init("make", mode="offline")
    producer.log_artifact(_artifact(folder))
    producer.finish()
    consumer = _init("use", mode="offline")
    consumer._log_artifact(_artifact(folder), is_user_created=True, use_after_commit=True)
    consumer.finish()
    assert server.calls == []  # offline: nothing sent yet

    synced = _sync(producer)
    assert synced.returncode == 0, synced.stderr
    (log,) = _inputs(server, "CreateArtifact")
    assert log["entityName"] == ""  # offline runs name no entity on artifact calls
    assert log["runName"] == producer.id
    assert _sent_aliases(log) == ["latest"]
    server.clear_calls()
    synced = _sync(consumer)
    assert synced.returncode == 0, synced.stderr
    (use,) = _inputs(server, "CreateArtifact")
    assert (use["entityName"], use["runName"], _sent_aliases(use)) == ("", None, ["latest"])

    runs = server.runs()  # the runs themselves take the viewer's entity either way
    assert {runs[producer.id].entity, runs[consumer.id].entity} == {server.default_entity}
    if empty_entity == "refuse":
        # wandb sync exits 0 and says nothing; the artifacts are simply not there
        assert server.versions() == []
        assert "UseArtifact" not in server.ops()
        assert [op for op, _ in server.errors] == ["CreateArtifact"] * 2
        assert "entity" in server.errors[0][1]
        assert "error" not in (synced.stdout + synced.stderr).lower()
        logs = "".join(p.read_text() for p in (tmp_path / "wandb_dir").rglob("debug-sync.*.log"))
        assert "failed to log artifact" in logs  # only wandb sync's debug log says so
        return
    (version,) = server.versions()
    assert version.entity == server.default_entity
    assert version.created_by == producer.id
    assert version.used_by == [consumer.id]
    assert version.aliases == {"latest"}
    assert _bytes(version.files) == FILES_V0
    assert [u["entityName"] for u in _inputs(server, "UseArtifact")] == [""]

    # with _resolve_aliases patched, an offline use record carries no alias at all
    server.clear_calls()
    import wandb.sdk.wandb_run as wandb_run

    monkeypatch.setattr(wandb_run, "_resolve_aliases", lambda aliases: list(aliases or []))
    patched = _init("use-patched", mode="offline")
    patched._log_artifact(_artifact(folder), is_user_created=True, use_after_commit=True)
    patched.finish()
    assert _sync(patched).returncode == 0
    (use,) = _inputs(server, "CreateArtifact")
    assert _sent_aliases(use) == []
    assert server.version("data", "v0").used_by == [consumer.id, patched.id]
    _assert_clean(server)


def test_public_api(serve: Callable[..., WandbServer], tmp_path, monkeypatch):
    server = serve()
    first = _init("make")
    first.log_artifact(_artifact(_folder(tmp_path / "v0", FILES_V0), metadata={"seed": 1}))
    first.finish()
    second = _init("make")
    second.log_artifact(
        _artifact(_folder(tmp_path / "v1", FILES_V1), metadata={"seed": 2, "deep": {"k": [1]}}),
        aliases=["best"],
    )
    second.finish()
    # a fresh cache, so that the download really comes from the server
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "fresh-cache"))
    server.clear_calls()

    api = wandb.Api()
    assert api.default_entity == server.default_entity
    assert "GetDefaultEntity" in server.ops()

    v0 = api.artifact("lineage-team/p/data:v0")
    assert v0.version == "v0"
    assert v0.digest == server.version("data", 0).digest
    assert v0.metadata == {"seed": 1}
    assert v0.aliases == []
    assert v0.logged_by().id == first.id
    latest = api.artifact("lineage-team/p/data:latest")
    assert latest.version == "v1"
    assert sorted(latest.aliases) == ["best", "latest"]
    assert latest.metadata == {"seed": 2, "deep": {"k": [1]}}
    assert api.artifact("p/data:best").id == latest.id  # the default entity

    server.clear_calls()
    root = Path(v0.download(root=str(tmp_path / "download")))
    downloaded = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
    assert _bytes(downloaded) == FILES_V0
    got = [(c.method, urllib.parse.unquote(c.path).rsplit("/", 1)[-1]) for c in server.calls]
    assert ("GET", "a.txt") in got and ("GET", "b.txt") in got  # not from a cache
    assert {"FetchArtifactManifest", "GetArtifactMembershipFileUrls"} <= set(server.ops())

    listed = list(api.artifacts("dataset", "lineage-team/p/data"))
    assert [a.version for a in listed] == ["v0", "v1"]
    assert [a.metadata.get("seed") for a in listed] == [1, 2]
    assert [a.version for a in listed if "deep" in a.metadata] == ["v1"]

    with pytest.raises(wandb.errors.CommError, match="artifact membership 'data:v7' not found"):
        api.artifact("lineage-team/p/data:v7")
    with pytest.raises(wandb.errors.CommError, match="not found"):
        api.artifact("lineage-team/p/data:no-such-alias")
    with pytest.raises(wandb.errors.CommError, match="project 'q' not found under entity"):
        api.artifact("lineage-team/q/data:v0")
    _assert_clean(server)


def _post(server: WandbServer, body: dict[str, Any], key: str | None = None) -> tuple[int, Any]:
    import requests

    response = requests.post(
        f"{server.url}/graphql",
        json=body,
        auth=("api", server.api_key if key is None else key),
        timeout=10,
    )
    return response.status_code, response.json()


VIEWER = {"query": "query Viewer { viewer { entity username } }", "operationName": "Viewer"}


def test_faults_and_auth():
    import requests

    with WandbServer() as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert len(server.api_key) == 40
        assert server.env() == {"WANDB_BASE_URL": server.url, "WANDB_API_KEY": server.api_key}
        status, body = _post(server, VIEWER)
        assert (status, body["data"]["viewer"]["entity"]) == (200, "lineage-team")
        assert _post(server, VIEWER, key="x" * 40)[0] == 401

        server.hang = True
        with pytest.raises(requests.exceptions.Timeout):
            requests.get(server.url, timeout=1)
        server.hang = False
        assert requests.get(server.url, timeout=5).status_code == 200

        server.fail_status = 500
        assert _post(server, VIEWER)[0] == 500
        server.fail_status = None
        server.refuse_all_keys = True
        assert _post(server, VIEWER)[0] == 401
        server.refuse_all_keys = False

        status, body = _post(server, {"query": "query NoSuchThing { viewer { entity } }"})
        assert status == 200 and "NoSuchThing" in body["errors"][0]["message"]
        assert server.unknown_ops == ["NoSuchThing"]
        assert server.calls[0] == Call("POST", "/graphql", "Viewer", {})
        assert server.ops()[-1] == "NoSuchThing"
        assert ("GET", "/") in [(c.method, c.path) for c in server.calls]
        server.clear_calls()
        assert server.calls == []


def _http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        conn.request(method, f"{parts.path}?{parts.query}", body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_streamed_upload_and_ranged_download():
    """Files go to disk in chunks, and come back whole or by byte range."""
    data = os.urandom(3 << 20)  # bigger than the server's chunk
    with WandbServer() as server:
        run = {
            "query": 'mutation UpsertBucket { upsertBucket(input: {name: "r", modelName: "p"}) '
            "{ bucket { id name project { name entity { name } } } inserted } }"
        }
        status, body = _post(server, run)
        assert status == 200 and body["data"]["upsertBucket"]["inserted"] is True
        assert body["data"]["upsertBucket"]["bucket"]["project"]["entity"]["name"] == "lineage-team"
        create = {
            "query": "mutation CreateArtifact($input: CreateArtifactInput!) "
            "{ createArtifact(input: $input) { artifact { id state } } }",
            "variables": {
                "input": {
                    "artifactTypeName": "blob",
                    "artifactCollectionName": "big",
                    "entityName": "",
                    "projectName": "p",
                    "runName": "r",
                    "digest": "d" * 32,
                    "enableDigestDeduplication": True,
                }
            },
        }
        artifact = _post(server, create)[1]["data"]["createArtifact"]["artifact"]
        assert artifact["state"] == "PENDING"
        files = {
            "query": "mutation CreateArtifactFiles($input: CreateArtifactFilesInput!) "
            "{ createArtifactFiles(input: $input) { files { edges { node { uploadUrl } } } } }",
            "variables": {
                "input": {"artifactFiles": [{"artifactID": artifact["id"], "name": "x/big.bin"}]}
            },
        }
        (edge,) = _post(server, files)[1]["data"]["createArtifactFiles"]["files"]["edges"]
        url = edge["node"]["uploadUrl"]
        assert url.startswith(f"{server.url}/")
        assert _http("PUT", url, body=data)[0] == 200
        assert _http("PUT", url.partition("?")[0], body=b"no signature, no key")[0] == 401

        (version,) = server.versions()
        assert version.files["x/big.bin"].read_bytes() == data
        commit = {
            "query": "mutation CommitArtifact($id: ID!) "
            "{ commitArtifact(input: {artifactID: $id}) { artifact { id digest } } }",
            "variables": {"id": artifact["id"]},
        }
        _post(server, commit)
        version = server.version("big", "latest")
        assert (version.index, version.state, version.created_by) == (0, "COMMITTED", "r")
        urls = {
            "query": "query GetArtifactMembershipFileUrls($id: ID!) "
            "{ artifact(id: $id) { files { edges { node { name directUrl } } } } }",
            "variables": {"id": artifact["id"]},
        }
        (edge,) = _post(server, urls)[1]["data"]["artifact"]["files"]["edges"]
        assert edge["node"]["name"] == "x/big.bin"
        url = edge["node"]["directUrl"]
        assert _http("GET", url) == (200, data)
        assert _http("GET", url, headers={"Range": "bytes=10-19"}) == (206, data[10:20])

    with WandbServer(empty_entity="refuse") as server:
        status, body = _post(server, create)
        assert status == 200 and body["data"] is None
        assert "entity" in body["errors"][0]["message"]
        assert server.versions() == []
