"""A small, local stand-in for a W&B server, for tests.

It speaks enough of W&B's HTTP and GraphQL protocol for the real wandb client (wandb-core
behind online runs and `wandb sync`, and the public `wandb.Api()`) to work against it, and it
models what artifact lineage depends on: entities, projects, runs, artifact collections,
versions deduplicated by digest, aliases, who logged and who used a version, and the files.

Stdlib only. It binds to 127.0.0.1 on a free port and never sends traffic anywhere.

GraphQL is answered by a tiny executor: the query text is parsed (operations, fragments,
variables, `@include`/`@skip`) and resolved against Python dicts whose values may be callables
taking the field's arguments, so the answer has exactly the shape the client asked for.
Only the operations in `SUPPORTED_OPS` are answered; any other is answered with a GraphQL
error naming it (and recorded in `WandbServer.unknown_ops`). Fields the model does not know
resolve to null and are recorded in `WandbServer.missing_fields`.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import hmac
import itertools
import json
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["Call", "Run", "Version", "WandbServer"]

CHUNK = 1 << 20  # bytes read or written at a time when streaming files

# Operations this server answers. Everything else gets a GraphQL error naming it.
SUPPORTED_OPS = frozenset(
    {
        # wandb-core (runs, sync, artifact saver)
        "ServerFeaturesQuery",
        "Viewer",
        "UpsertBucket",
        "RunResumeStatus",
        "CreateRunFiles",
        "MarkRunFilesUploaded",
        "CreateArtifact",
        "CreateArtifactManifest",
        "UpdateArtifactManifest",
        "CreateArtifactFiles",
        "CompleteMultipartUploadArtifact",
        "CommitArtifact",
        "UseArtifact",
        "UpdateArtifact",
        "ClientIDMapping",
        "ArtifactManifest",
        "ArtifactFileURLsByManifestEntries",
        "FetchArtifactDigestAlgorithm",
        "XXHashDigestsEnabled",
        "FetchOrgEntityFromEntity",
        # public API (wandb.Api(), run.use_artifact(name))
        "GetDefaultEntity",
        "GetViewer",
        "ArtifactMembershipByName",
        "ArtifactByID",
        "ArtifactType",
        "ArtifactCreatedBy",
        "ArtifactUsedBy",
        "FetchArtifactManifest",
        "GetArtifactMembershipFileUrls",
        "ProjectArtifacts",
        "ProjectArtifactCollection",
        "Run",
        "RunState",
    }
)


# --------------------------------------------------------------------------------------------
# The public records


@dataclasses.dataclass(frozen=True)
class Call:
    """One request the server received."""

    method: str
    path: str
    op: str  # GraphQL operation name, "" for non-GraphQL requests
    variables: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Version:
    """A snapshot of one artifact version (the server keeps its own mutable record)."""

    id: str
    entity: str
    project: str
    name: str  # the collection
    type: str
    index: int  # v0, v1, ... in commit order per collection; -1 while PENDING
    digest: str
    aliases: set[str]
    created_by: str | None
    logged_by: list[str]
    used_by: list[str]
    metadata: dict[str, Any]
    files: dict[str, Path]
    state: str
    description: str | None = None
    manifest: Path | None = None
    client_id: str | None = None

    @property
    def version(self) -> str:
        return f"v{self.index}" if self.index >= 0 else ""


@dataclasses.dataclass(frozen=True)
class Run:
    """A snapshot of one run."""

    id: str  # the run id (what W&B calls the run's `name`)
    entity: str
    project: str
    name: str | None  # display name
    job_type: str | None
    group: str | None
    config: dict[str, Any]
    storage_id: str = ""
    state: str | None = None
    tags: list[str] = dataclasses.field(default_factory=list)
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    files: dict[str, Path] = dataclasses.field(default_factory=dict)
    exit_code: int | None = None


# --------------------------------------------------------------------------------------------
# A tiny GraphQL parser and executor


class GraphQLError(Exception):
    pass


_TOKEN = re.compile(
    r"""
    (?P<skip>[\s,\ufeff]+|\#[^\n\r]*)
  | (?P<spread>\.\.\.)
  | (?P<block>\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\")
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<punct>[!$&():=@\[\]{}|])
    """,
    re.VERBOSE,
)


@dataclasses.dataclass
class _Var:
    name: str


@dataclasses.dataclass
class _Enum:
    name: str


@dataclasses.dataclass
class _Field:
    alias: str
    name: str
    args: dict[str, Any]
    directives: list[tuple[str, dict[str, Any]]]
    selections: list[Any] | None


@dataclasses.dataclass
class _Spread:
    name: str
    directives: list[tuple[str, dict[str, Any]]]


@dataclasses.dataclass
class _Inline:
    type_condition: str | None
    directives: list[tuple[str, dict[str, Any]]]
    selections: list[Any]


@dataclasses.dataclass
class _Operation:
    kind: str
    name: str
    defaults: dict[str, Any]
    selections: list[Any]


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                raise GraphQLError(f"Syntax Error: unexpected character {text[pos]!r} at {pos}")
            pos = m.end()
            kind = m.lastgroup or ""
            if kind != "skip":
                self.tokens.append((kind, m.group()))
        self.i = 0

    def peek(self, value: str | None = None) -> bool:
        if self.i >= len(self.tokens):
            return False
        return value is None or self.tokens[self.i][1] == value

    def take(self, value: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.tokens):
            raise GraphQLError("Syntax Error: unexpected end of document")
        tok = self.tokens[self.i]
        if value is not None and tok[1] != value:
            raise GraphQLError(f"Syntax Error: expected {value!r}, found {tok[1]!r}")
        self.i += 1
        return tok

    def name(self) -> str:
        kind, value = self.take()
        if kind != "name":
            raise GraphQLError(f"Syntax Error: expected a name, found {value!r}")
        return value

    def document(self) -> tuple[list[_Operation], dict[str, _Inline]]:
        ops: list[_Operation] = []
        fragments: dict[str, _Inline] = {}
        while self.peek():
            if self.peek("{"):
                ops.append(_Operation("query", "", {}, self.selection_set()))
                continue
            keyword = self.name()
            if keyword == "fragment":
                name = self.name()
                if self.name() != "on":
                    raise GraphQLError("Syntax Error: expected 'on'")
                cond = self.name()
                directives = self.directives()
                fragments[name] = _Inline(cond, directives, self.selection_set())
            elif keyword in ("query", "mutation", "subscription"):
                name = self.name() if self.peek() and self.tokens[self.i][0] == "name" else ""
                defaults: dict[str, Any] = {}
                if self.peek("("):
                    self.take("(")
                    while not self.peek(")"):
                        self.take("$")
                        var = self.name()
                        self.take(":")
                        self.type_ref()
                        if self.peek("="):
                            self.take("=")
                            defaults[var] = self.value()
                        self.directives()
                    self.take(")")
                self.directives()
                ops.append(_Operation(keyword, name, defaults, self.selection_set()))
            else:
                raise GraphQLError(f"Syntax Error: unexpected {keyword!r}")
        return ops, fragments

    def type_ref(self) -> None:
        if self.peek("["):
            self.take("[")
            self.type_ref()
            self.take("]")
        else:
            self.name()
        if self.peek("!"):
            self.take("!")

    def directives(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        while self.peek("@"):
            self.take("@")
            out.append((self.name(), self.arguments()))
        return out

    def arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if self.peek("("):
            self.take("(")
            while not self.peek(")"):
                key = self.name()
                self.take(":")
                args[key] = self.value()
            self.take(")")
        return args

    def value(self) -> Any:
        kind, tok = self.take()
        if tok == "$":
            return _Var(self.name())
        if kind == "number":
            return float(tok) if any(c in tok for c in ".eE") else int(tok)
        if kind == "string":
            return json.loads(tok)
        if kind == "block":
            return tok[3:-3]
        if tok == "[":
            items = []
            while not self.peek("]"):
                items.append(self.value())
            self.take("]")
            return items
        if tok == "{":
            obj = {}
            while not self.peek("}"):
                key = self.name()
                self.take(":")
                obj[key] = self.value()
            self.take("}")
            return obj
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(tok, _Enum(tok))
        raise GraphQLError(f"Syntax Error: unexpected {tok!r}")

    def selection_set(self) -> list[Any]:
        self.take("{")
        out: list[Any] = []
        while not self.peek("}"):
            if self.peek("..."):
                self.take("...")
                if self.peek("on"):
                    self.take("on")
                    cond = self.name()
                    directives = self.directives()
                    out.append(_Inline(cond, directives, self.selection_set()))
                elif self.peek("{") or self.peek("@"):
                    directives = self.directives()
                    out.append(_Inline(None, directives, self.selection_set()))
                else:
                    name = self.name()
                    out.append(_Spread(name, self.directives()))
                continue
            alias = name = self.name()
            if self.peek(":"):
                self.take(":")
                name = self.name()
            args = self.arguments()
            directives = self.directives()
            selections = self.selection_set() if self.peek("{") else None
            out.append(_Field(alias, name, args, directives, selections))
        self.take("}")
        return out


def _resolve_value(value: Any, variables: dict[str, Any]) -> Any:
    if isinstance(value, _Var):
        return variables.get(value.name)
    if isinstance(value, _Enum):
        return value.name
    if isinstance(value, list):
        return [_resolve_value(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _resolve_value(v, variables) for k, v in value.items()}
    return value


class _Executor:
    """Resolves a selection set against nested dicts (values may be callables of the args)."""

    def __init__(
        self,
        fragments: dict[str, _Inline],
        variables: dict[str, Any],
        on_missing: Callable[[str, str], None],
    ) -> None:
        self.fragments = fragments
        self.variables = variables
        self.on_missing = on_missing

    def included(self, directives: list[tuple[str, dict[str, Any]]]) -> bool:
        for name, args in directives:
            cond = bool(_resolve_value(args.get("if"), self.variables))
            if (name == "include" and not cond) or (name == "skip" and cond):
                return False
        return True

    def fields(self, obj: dict[str, Any], selections: list[Any]) -> Iterator[_Field]:
        for sel in selections:
            if not self.included(sel.directives):
                continue
            if isinstance(sel, _Field):
                yield sel
                continue
            frag = self.fragments[sel.name] if isinstance(sel, _Spread) else sel
            if isinstance(sel, _Spread) and not self.included(frag.directives):
                continue
            cond = frag.type_condition
            typename = obj.get("__typename")
            # a payload with no __typename of its own matches any type condition
            if cond is None or typename is None or cond == typename or cond in obj.get("__is", ()):
                yield from self.fields(obj, frag.selections)

    def execute(self, obj: dict[str, Any], selections: list[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in self.fields(obj, selections):
            if field.name == "__typename":
                out[field.alias] = obj.get("__typename")
                continue
            args = {k: _resolve_value(v, self.variables) for k, v in field.args.items()}
            if field.name in obj:
                value = obj[field.name]
                if callable(value):
                    value = value(**args)
            else:
                self.on_missing(str(obj.get("__typename")), field.name)
                value = None
            out[field.alias] = self.complete(value, field.selections)
        return out

    def complete(self, value: Any, selections: list[Any] | None) -> Any:
        if value is None:
            return None
        if isinstance(value, list | tuple):
            return [self.complete(v, selections) for v in value]
        if selections is None:
            return value
        if not isinstance(value, dict):
            raise GraphQLError(f"selection on a scalar: {value!r}")
        return self.execute(value, selections)


# --------------------------------------------------------------------------------------------
# The model (mutable records, guarded by the server's lock)


@dataclasses.dataclass
class _RunRec:
    storage_id: str
    entity: str
    project: str
    name: str  # run id
    display_name: str | None = None
    job_type: str | None = None
    group: str | None = None
    config_raw: dict[str, Any] = dataclasses.field(default_factory=dict)
    state: str | None = "running"
    tags: list[str] = dataclasses.field(default_factory=list)
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    files: dict[str, Path] = dataclasses.field(default_factory=dict)
    exit_code: int | None = None
    created_at: str = ""
    description: str | None = None
    notes: str | None = None
    sweep: str | None = None
    commit: str | None = None
    host: str | None = None
    program: str | None = None

    def config(self) -> dict[str, Any]:
        out = {}
        for key, value in self.config_raw.items():
            if key == "_wandb":
                continue
            out[key] = value["value"] if isinstance(value, dict) and "value" in value else value
        return out


@dataclasses.dataclass
class _VersionRec:
    id: str
    collection: _Collection
    digest: str
    state: str = "PENDING"
    index: int = -1
    created_by: _RunRec | None = None
    logged_by: list[_RunRec] = dataclasses.field(default_factory=list)
    used_by: list[_RunRec] = dataclasses.field(default_factory=list)
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    description: str | None = None
    files: dict[str, Path] = dataclasses.field(default_factory=dict)
    pending_aliases: list[str] = dataclasses.field(default_factory=list)
    manifest: Path | None = None
    manifest_id: str | None = None
    client_id: str | None = None
    created_at: str = ""
    updated_at: str = ""
    dir: Path = Path()


@dataclasses.dataclass
class _Collection:
    id: str
    entity: str
    project: str
    name: str
    type: str
    versions: list[_VersionRec] = dataclasses.field(default_factory=list)
    aliases: dict[str, _VersionRec] = dataclasses.field(default_factory=dict)
    next_index: int = 0
    client_id: str | None = None
    created_at: str = ""

    def committed(self) -> list[_VersionRec]:
        return sorted((v for v in self.versions if v.state == "COMMITTED"), key=lambda v: v.index)

    def aliases_of(self, version: _VersionRec) -> list[str]:
        return sorted(a for a, v in self.aliases.items() if v is version)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


def _gid(kind: str, n: int) -> str:
    """A W&B-style opaque id: base64 of "Kind:n"."""
    return base64.b64encode(f"{kind}:{n}".encode()).decode()


# --------------------------------------------------------------------------------------------
# The server


class WandbServer:
    """A local W&B server for tests; use it as a context manager.

    Args:
        merge_aliases_on_dedup: on a `CreateArtifact` that hits an existing committed version
            (same collection and digest), True moves the aliases the call sent (including
            `latest`) onto that version; False ignores them.
        empty_entity: what a call naming entity "" means: "default" = `default_entity`,
            "refuse" = a GraphQL error saying the entity is required (nothing is recorded).
        default_entity: the viewer's entity.
        root: where uploaded files are kept (default: a temporary folder, removed at stop).
        reset_wandb: call `wandb.teardown()` (if wandb is imported) at start and at stop.
            The wandb process singleton reads WANDB_BASE_URL and WANDB_API_KEY from the
            environment once, at first use, and keeps them: without a reset, a run started
            after a previous server stopped talks to the old URL (and wandb.init waits 90 s).
            So: start the server, then set `env()` in os.environ, then use wandb.
    """

    def __init__(
        self,
        *,
        merge_aliases_on_dedup: bool = True,
        empty_entity: str = "default",
        default_entity: str = "lineage-team",
        root: Path | str | None = None,
        reset_wandb: bool = True,
    ) -> None:
        if empty_entity not in ("default", "refuse"):
            raise ValueError(f"empty_entity must be 'default' or 'refuse', not {empty_entity!r}")
        self.reset_wandb = reset_wandb
        self.merge_aliases_on_dedup = merge_aliases_on_dedup
        self.empty_entity = empty_entity
        self.default_entity = default_entity
        self.username = "lineage-user"
        self.api_key = secrets.token_hex(20)
        self._secret = secrets.token_bytes(16)
        # fault switches
        self.hang = False
        self.fail_status: int | None = None
        self.refuse_all_keys = False
        # records
        self.calls: list[Call] = []
        self.unknown_ops: list[str] = []
        self.missing_fields: list[tuple[str, str, str]] = []  # (op, type, field)
        self.errors: list[tuple[str, str]] = []  # (op, message) of GraphQL errors answered
        self.headers_seen: list[dict[str, str]] = []
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._projects: dict[tuple[str, str], dict[str, Any]] = {}
        self._runs: dict[tuple[str, str, str], _RunRec] = {}
        self._collections: dict[tuple[str, str, str], _Collection] = {}
        self._by_id: dict[str, Any] = {}  # opaque id -> record
        self._client_ids: dict[str, str] = {}  # client id -> server id
        self._manifests: dict[str, _VersionRec] = {}  # manifest id -> version
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="wandb-server-")) if root is None else Path(root)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> WandbServer:
        if self.reset_wandb:
            reset_wandb()
        server = self

        class Handler(_Handler):
            wandb = server

        self._httpd = _HTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.hang:
            self._stopped.set()  # release hanging requests first, or the teardown waits on them
        if self.reset_wandb:
            reset_wandb()
        self._stopped.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> WandbServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def env(self) -> dict[str, str]:
        return {"WANDB_BASE_URL": self.url, "WANDB_API_KEY": self.api_key}

    # -- inspection --------------------------------------------------------------------------

    def ops(self) -> list[str]:
        with self._lock:
            return [c.op for c in self.calls if c.op]

    def clear_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    def versions(self, name: str | None = None) -> list[Version]:
        with self._lock:
            recs = [
                v
                for c in self._collections.values()
                if name is None or c.name == name
                for v in c.versions
            ]
            recs.sort(
                key=lambda v: (
                    v.collection.entity,
                    v.collection.project,
                    v.collection.name,
                    v.index,
                )
            )
            return [self._snapshot(v) for v in recs]

    def version(
        self,
        name: str,
        index_or_alias: int | str,
        entity: str | None = None,
        project: str | None = None,
    ) -> Version | None:
        """The version of collection `name` with that index (3 or "v3") or alias.

        `entity`/`project` None match any; a name found in several places raises ValueError.
        """
        with self._lock:
            colls = [
                c
                for c in self._collections.values()
                if c.name == name
                and (entity is None or c.entity == entity)
                and (project is None or c.project == project)
            ]
            if len(colls) > 1:
                where = sorted(f"{c.entity}/{c.project}" for c in colls)
                raise ValueError(f"collection {name!r} is in several projects: {where}")
            if not colls:
                return None
            rec = self._find_version(colls[0], index_or_alias)
            return None if rec is None else self._snapshot(rec)

    def runs(self) -> dict[str, Run]:
        with self._lock:
            return {r.name: self._run_snapshot(r) for r in self._runs.values()}

    def _snapshot(self, v: _VersionRec) -> Version:
        c = v.collection
        return Version(
            id=v.id,
            entity=c.entity,
            project=c.project,
            name=c.name,
            type=c.type,
            index=v.index,
            digest=v.digest,
            aliases=set(c.aliases_of(v)),
            created_by=v.created_by.name if v.created_by else None,
            logged_by=[r.name for r in v.logged_by],
            used_by=[r.name for r in v.used_by],
            metadata=copy.deepcopy(v.metadata),
            files=dict(v.files),
            state=v.state,
            description=v.description,
            manifest=v.manifest,
            client_id=v.client_id,
        )

    @staticmethod
    def _run_snapshot(r: _RunRec) -> Run:
        return Run(
            id=r.name,
            entity=r.entity,
            project=r.project,
            name=r.display_name,
            job_type=r.job_type,
            group=r.group,
            config=r.config(),
            storage_id=r.storage_id,
            state=r.state,
            tags=list(r.tags),
            summary=copy.deepcopy(r.summary),
            history=copy.deepcopy(r.history),
            files=dict(r.files),
            exit_code=r.exit_code,
        )

    # -- model helpers (call with the lock held) ---------------------------------------------

    def _new_id(self, kind: str) -> str:
        return _gid(kind, next(self._ids))

    def _entity(self, name: Any) -> str:
        if name is None:
            return self.default_entity
        if name == "":
            if self.empty_entity == "refuse":
                raise GraphQLError("entityName is required: an entity name must not be empty")
            return self.default_entity
        return str(name)

    def _project(self, entity: str, name: Any, create: bool = False) -> dict[str, Any] | None:
        name = name or "uncategorized"
        key = (entity, name)
        proj = self._projects.get(key)
        if proj is None and create:
            n = next(self._ids)
            proj = {"id": _gid("Project", n), "internal_id": n, "entity": entity, "name": name}
            self._projects[key] = proj
        return proj

    def _run(self, entity: str, project: str, name: Any) -> _RunRec | None:
        if not name:
            return None
        return self._runs.get((entity, project, str(name)))

    def _version_by_id(self, vid: Any) -> _VersionRec | None:
        rec = self._by_id.get(str(vid)) if vid is not None else None
        return rec if isinstance(rec, _VersionRec) else None

    @staticmethod
    def _find_version(coll: _Collection, ref: int | str) -> _VersionRec | None:
        if isinstance(ref, int) or re.fullmatch(r"v\d+", str(ref)):
            index = ref if isinstance(ref, int) else int(str(ref)[1:])
            for v in coll.versions:
                if v.state == "COMMITTED" and v.index == index:
                    return v
            return None
        return coll.aliases.get(str(ref))

    def _move_aliases(self, coll: _Collection, version: _VersionRec, aliases: list[str]) -> None:
        for alias in aliases:
            if alias and not re.fullmatch(r"v\d+", alias):
                coll.aliases[alias] = version

    def _commit(self, v: _VersionRec) -> None:
        if v.state == "COMMITTED":
            return
        coll = v.collection
        v.state = "COMMITTED"
        v.index = coll.next_index
        coll.next_index += 1
        v.updated_at = _now()
        self._move_aliases(coll, v, ["latest", *v.pending_aliases])
        v.pending_aliases = []

    def _signature(self, path: str) -> str:
        # over the unquoted path, so that a client re-encoding the URL keeps it valid
        plain = urllib.parse.unquote(path).encode()
        return hmac.new(self._secret, plain, hashlib.sha256).hexdigest()[:32]

    def _sign(self, path: str) -> str:
        """A URL for `path` that works without an API key (like a presigned storage URL)."""
        return f"{self.url}{path}?sig={self._signature(path)}"

    def _check_sig(self, path: str, query: dict[str, list[str]]) -> bool:
        return hmac.compare_digest(self._signature(path), (query.get("sig") or [""])[0])

    def _file_url(self, v: _VersionRec, name: str) -> str:
        return self._sign(
            f"/storage/artifact/{urllib.parse.quote(v.id, safe='')}/file/"
            + urllib.parse.quote(name)
        )

    # -- GraphQL nodes -----------------------------------------------------------------------

    def _entity_node(self, name: str) -> dict[str, Any]:
        return {
            "__typename": "Entity",
            "id": _gid("Entity", abs(hash(name)) % 10**9),
            "name": name,
            "xxhashDigestsEnabled": False,
            "organization": None,
            "isTeam": name != self.username,
        }

    def _project_node(self, proj: dict[str, Any]) -> dict[str, Any]:
        entity, pname = proj["entity"], proj["name"]

        def coll(name: str, type_name: str | None = None) -> dict[str, Any] | None:
            c = self._collections.get((entity, pname, name))
            if c is None or (type_name is not None and c.type != type_name):
                return None
            return self._collection_node(c)

        def artifact_type(name: str) -> dict[str, Any] | None:
            type_name = name
            if not any(
                c.type == type_name
                for (e, p, _), c in self._collections.items()
                if (e, p) == (entity, pname)
            ):
                return None
            return {
                "__typename": "ArtifactType",
                "id": _gid("ArtifactType", abs(hash((entity, pname, type_name))) % 10**9),
                "name": type_name,
                "artifactCollection": lambda name, **_: coll(name, type_name=type_name),
                "artifactSequence": lambda name, **_: coll(name, type_name=type_name),
            }

        def membership(name: str, **_: Any) -> dict[str, Any] | None:
            cname, _, ref = name.partition(":")
            c = self._collections.get((entity, pname, cname))
            if c is None:
                return None
            v = self._find_version(c, ref or "latest")
            return None if v is None else self._membership_node(v)

        def artifact(name: str, **_: Any) -> dict[str, Any] | None:
            cname, _, ref = name.partition(":")
            c = self._collections.get((entity, pname, cname))
            v = None if c is None else self._find_version(c, ref or "latest")
            return None if v is None else self._version_node(v)

        def run(name: str, **_: Any) -> dict[str, Any] | None:
            r = self._run(entity, pname, name)
            return None if r is None else self._run_node(r)

        return {
            "__typename": "Project",
            "id": proj["id"],
            "internalId": proj["id"],
            "name": pname,
            "entityName": entity,
            "entity": self._entity_node(entity),
            "readOnly": False,
            "artifactType": lambda name, **_: artifact_type(name),
            "artifactCollection": lambda name, **_: coll(name),
            "artifactSequence": lambda name, **_: coll(name),
            "artifactCollectionMembership": membership,
            "artifact": artifact,
            "run": run,
            "bucket": run,
        }

    def _collection_node(self, c: _Collection) -> dict[str, Any]:
        def artifacts(first: int | None = None, after: str | None = None, **_: Any) -> Any:
            committed = c.committed()
            start = int(after) if after else 0
            end = len(committed) if not first else start + int(first)
            page = committed[start:end]
            return {
                "totalCount": len(committed),
                "pageInfo": {
                    "__typename": "PageInfo",
                    "endCursor": str(start + len(page)) if page else after,
                    "hasNextPage": end < len(committed),
                },
                "edges": [
                    {
                        "version": f"v{v.index}",
                        "cursor": str(start + i + 1),
                        "node": self._version_node(v),
                    }
                    for i, v in enumerate(page)
                ],
            }

        def membership(aliasName: str, **_: Any) -> dict[str, Any] | None:
            v = self._find_version(c, aliasName)
            return None if v is None else self._membership_node(v)

        latest = c.aliases.get("latest")
        proj = self._projects[(c.entity, c.project)]
        return {
            "__typename": "ArtifactSequence",
            "__is": ("ArtifactCollection",),
            "id": c.id,
            "name": c.name,
            "description": None,
            "createdAt": c.created_at,
            "project": lambda: self._project_node(proj),
            "artifactType": {"__typename": "ArtifactType", "name": c.type},
            "defaultArtifactType": {"__typename": "ArtifactType", "name": c.type},
            "latestArtifact": (lambda: self._version_node(latest)) if latest else None,
            "artifacts": artifacts,
            "artifactMembership": membership,
            "digestAlgorithm": "MANIFEST_MD5",
            "tags": {"edges": []},
        }

    def _alias_nodes(self, v: _VersionRec) -> list[dict[str, Any]]:
        c = v.collection
        return [
            {
                "__typename": "ArtifactAlias",
                "id": _gid("ArtifactAlias", abs(hash((c.id, a))) % 10**9),
                "alias": a,
                "artifactCollectionName": c.name,
                "artifactCollection": lambda: self._collection_node(c),
            }
            for a in c.aliases_of(v)
        ]

    def _files_conn(
        self, v: _VersionRec, first: Any = None, after: Any = None, names: Any = None, **_: Any
    ) -> dict[str, Any]:
        items = sorted(v.files.items())
        if names is not None:
            items = [(n, p) for n, p in items if n in set(names)]
        start = int(after) if after else 0
        end = len(items) if not first else start + int(first)
        page = items[start:end]
        return {
            "__typename": "FileConnection",
            "pageInfo": {
                "__typename": "PageInfo",
                "endCursor": str(start + len(page)) if page else after,
                "hasNextPage": end < len(items),
            },
            "edges": [
                {
                    "cursor": str(start + i + 1),
                    "node": {
                        "__typename": "File",
                        "id": _gid("File", abs(hash((v.id, n))) % 10**9),
                        "name": n,
                        "displayName": n,
                        "sizeBytes": p.stat().st_size if p.exists() else 0,
                        "directUrl": self._file_url(v, n),
                        "url": self._file_url(v, n),
                    },
                }
                for i, (n, p) in enumerate(page)
            ],
        }

    def _membership_node(self, v: _VersionRec) -> dict[str, Any]:
        c = v.collection
        return {
            "__typename": "ArtifactCollectionMembership",
            "id": _gid("ArtifactCollectionMembership", abs(hash(v.id)) % 10**9),
            "versionIndex": v.index if v.state == "COMMITTED" else None,
            "createdAt": v.created_at,
            "aliases": lambda: self._alias_nodes(v),
            "artifactCollection": lambda: self._collection_node(c),
            "artifact": lambda: self._version_node(v),
            "files": lambda **kw: self._files_conn(v, **kw),
        }

    def _version_node(self, v: _VersionRec) -> dict[str, Any]:
        c = v.collection
        size = sum(p.stat().st_size for p in v.files.values() if p.exists())

        def manifest() -> dict[str, Any] | None:
            if v.manifest_id is None:
                return None
            url = self._sign(f"/storage/manifest/{urllib.parse.quote(v.manifest_id, safe='')}")
            return {
                "__typename": "ArtifactManifest",
                "id": v.manifest_id,
                "file": {"__typename": "File", "id": v.manifest_id, "directUrl": url, "url": url},
            }

        def runs_conn(recs: list[_RunRec]) -> dict[str, Any]:
            return {"edges": [{"node": self._run_node(r)} for r in recs]}

        return {
            "__typename": "Artifact",
            "id": v.id,
            "artifactSequence": lambda: self._collection_node(c),
            "versionIndex": v.index if v.state == "COMMITTED" else None,
            "artifactType": {"__typename": "ArtifactType", "name": c.type},
            "description": v.description,
            "metadata": json.dumps(v.metadata),
            "ttlDurationSeconds": -1,
            "ttlIsInherited": True,
            "tags": [],
            "historyStep": None,
            "state": v.state,
            "size": size,
            "digest": v.digest,
            "digestAlgorithm": "MANIFEST_MD5",
            "commitHash": v.digest[:12] if v.state == "COMMITTED" else None,
            "fileCount": len(v.files),
            "createdAt": v.created_at,
            "updatedAt": v.updated_at or None,
            "aliases": lambda: self._alias_nodes(v),
            "createdBy": (lambda: self._run_node(v.created_by)) if v.created_by else None,
            "usedBy": lambda **_: runs_conn(v.used_by),
            "currentManifest": manifest,
            "files": lambda **kw: self._files_conn(v, **kw),
            "filesByManifestEntries": lambda entries=None, **_: self._files_conn(
                v, names=None if entries is None else [e.get("name") for e in entries]
            ),
        }

    def _run_node(self, r: _RunRec) -> dict[str, Any]:
        proj = self._projects[(r.entity, r.project)]
        return {
            "__typename": "Run",
            "id": r.storage_id,
            "name": r.name,
            "displayName": r.display_name,
            "description": r.description,
            "notes": r.notes,
            "config": json.dumps(r.config_raw),
            "sweepName": r.sweep,
            "state": r.state,
            "group": r.group,
            "jobType": r.job_type,
            "commit": r.commit,
            "readOnly": False,
            "createdAt": r.created_at,
            "heartbeatAt": r.created_at,
            "tags": list(r.tags),
            "systemMetrics": "{}",
            "summaryMetrics": json.dumps(r.summary),
            "historyLineCount": len(r.history),
            "logLineCount": 0,
            "eventsLineCount": 0,
            "historyTail": "[]",
            "eventsTail": "[]",
            "historyKeys": None,
            "wandbConfig": lambda **_: json.dumps({}),
            "projectId": proj["internal_id"],
            "project": lambda: self._project_node(proj),
            "user": {"__typename": "User", "name": self.username, "username": self.username},
        }

    def _viewer_node(self) -> dict[str, Any]:
        return {
            "__typename": "User",
            "id": _gid("User", 1),
            "entity": self.default_entity,
            "username": self.username,
            "name": self.username,
            "email": f"{self.username}@example.invalid",
            "admin": False,
            "flags": "{}",
            "apiKeys": {"edges": []},
            "teams": {"edges": [{"node": {"name": self.default_entity}}]},
        }

    # -- GraphQL roots -----------------------------------------------------------------------

    def _query_root(self) -> dict[str, Any]:
        def project(name: Any = None, entityName: Any = None, **_: Any) -> Any:
            proj = self._project(self._entity(entityName), name)
            return None if proj is None else self._project_node(proj)

        def artifact(id: Any = None, **_: Any) -> Any:
            v = self._version_by_id(id)
            return None if v is None else self._version_node(v)

        def client_id_mapping(clientID: Any = None, **_: Any) -> Any:
            sid = self._client_ids.get(str(clientID))
            return None if sid is None else {"serverID": sid}

        return {
            "__typename": "Query",
            "serverInfo": {
                "__typename": "ServerInfo",
                "features": [],
                "cliVersionInfo": "{}",
                "latestLocalVersionInfo": None,
                "availableBucketProviders": [],
            },
            "viewer": self._viewer_node(),
            "project": project,
            "model": project,
            "artifact": artifact,
            "clientIDMapping": client_id_mapping,
            "entity": lambda name=None, **_: self._entity_node(self._entity(name)),
        }

    def _mutation_root(self) -> dict[str, Any]:
        return {
            "__typename": "Mutation",
            "upsertBucket": self._m_upsert_bucket,
            "createRunFiles": self._m_create_run_files,
            "markRunFilesUploaded": lambda **_: {"success": True},
            "createArtifact": self._m_create_artifact,
            "createArtifactManifest": self._m_create_manifest,
            "updateArtifactManifest": self._m_update_manifest,
            "createArtifactFiles": self._m_create_artifact_files,
            "completeMultipartUploadArtifact": self._m_complete_multipart,
            "commitArtifact": self._m_commit_artifact,
            "useArtifact": self._m_use_artifact,
            "updateArtifact": self._m_update_artifact,
        }

    def _m_upsert_bucket(self, input: dict[str, Any]) -> dict[str, Any]:
        run = None
        if input.get("id"):
            rec = self._by_id.get(str(input["id"]))
            run = rec if isinstance(rec, _RunRec) else None
        inserted = False
        if run is None:
            # UpsertBucket never refuses an empty entity: the run takes the viewer's entity
            entity = input.get("entityName") or self.default_entity
            proj = self._project(entity, input.get("modelName"), create=True)
            assert proj is not None
            name = input.get("name") or secrets.token_hex(4)
            run = self._run(entity, proj["name"], name)
            if run is None:
                run = _RunRec(
                    storage_id=self._new_id("Run"),
                    entity=entity,
                    project=proj["name"],
                    name=name,
                    # like W&B, the server names a run that has no display name
                    display_name=input.get("displayName") or f"run-{name}",
                    created_at=_now(),
                )
                self._runs[(entity, proj["name"], name)] = run
                self._by_id[run.storage_id] = run
                inserted = True
        for key, attr in (
            ("displayName", "display_name"),
            ("jobType", "job_type"),
            ("groupName", "group"),
            ("description", "description"),
            ("notes", "notes"),
            ("sweep", "sweep"),
            ("commit", "commit"),
            ("host", "host"),
            ("jobProgram", "program"),
            ("state", "state"),
        ):
            if input.get(key) is not None:
                setattr(run, attr, input[key])
        if input.get("tags") is not None:
            run.tags = list(input["tags"])
        if input.get("config"):
            run.config_raw.update(json.loads(input["config"]))
        if input.get("summaryMetrics"):
            run.summary.update(json.loads(input["summaryMetrics"]))
        return {"bucket": self._run_node(run), "inserted": inserted}

    def _m_create_run_files(self, input: dict[str, Any]) -> dict[str, Any]:
        entity = self._entity(input.get("entityName"))
        proj = self._project(entity, input.get("projectName"))
        run = self._run(entity, proj["name"], input.get("runName")) if proj else None
        if run is None:
            raise GraphQLError(f"run {input.get('runName')!r} not found")
        files = []
        for name in input.get("files") or []:
            path = "/storage/run/{}/{}".format(
                urllib.parse.quote(run.storage_id, safe=""), urllib.parse.quote(name)
            )
            files.append({"name": name, "uploadUrl": self._sign(path)})
        return {"runID": run.storage_id, "uploadHeaders": [], "files": files}

    def _m_create_artifact(self, input: dict[str, Any]) -> dict[str, Any]:
        entity = self._entity(input.get("entityName"))
        names = input.get("artifactCollectionNames") or [input.get("artifactCollectionName")]
        cname = names[0]
        type_name = input.get("artifactTypeName")
        digest = input.get("digest")
        if not cname or not type_name or not digest:
            raise GraphQLError("artifact collection name, type and digest are required")
        pname = input.get("projectName") or "uncategorized"
        run = None
        if input.get("runName"):
            run = self._run(entity, pname, input["runName"])
            if run is None:
                raise GraphQLError(f"run {entity}/{pname}/{input['runName']} not found")
        proj = self._project(entity, pname, create=True)
        assert proj is not None
        coll = self._collections.get((entity, pname, cname))
        if coll is not None and coll.type != type_name:
            raise GraphQLError(
                f"artifact collection {cname!r} has type {coll.type!r}, not {type_name!r}"
            )
        aliases = [a.get("alias") for a in input.get("aliases") or [] if a.get("alias")]
        if coll is None:
            coll = _Collection(
                id=self._new_id("ArtifactCollection"),
                entity=entity,
                project=pname,
                name=cname,
                type=type_name,
                client_id=input.get("sequenceClientID"),
                created_at=_now(),
            )
            self._collections[(entity, pname, cname)] = coll
            self._by_id[coll.id] = coll
            if coll.client_id:
                self._client_ids[coll.client_id] = coll.id
        latest_before = coll.aliases.get("latest")
        existing = None
        if input.get("enableDigestDeduplication"):
            same = [v for v in coll.versions if v.digest == digest]
            existing = next((v for v in same if v.state == "COMMITTED"), None) or next(
                iter(same), None
            )
        if existing is not None:
            if run is not None and run not in existing.logged_by:
                existing.logged_by.append(run)
            if existing.state == "COMMITTED":
                if self.merge_aliases_on_dedup:
                    self._move_aliases(coll, existing, aliases)
            else:
                existing.pending_aliases.extend(
                    a for a in aliases if a not in existing.pending_aliases
                )
            version = existing
        else:
            version = _VersionRec(
                id=self._new_id("Artifact"),
                collection=coll,
                digest=digest,
                created_by=run,
                logged_by=[run] if run else [],
                metadata=json.loads(input["metadata"]) if input.get("metadata") else {},
                description=input.get("description"),
                pending_aliases=aliases,
                client_id=input.get("clientID"),
                created_at=_now(),
            )
            version.dir = self.root / "artifacts" / f"{next(self._ids)}"
            version.dir.mkdir(parents=True)
            coll.versions.append(version)
            self._by_id[version.id] = version
        if input.get("clientID"):
            self._client_ids[input["clientID"]] = version.id
        node = self._version_node(version)
        seq = self._collection_node(coll)
        seq["latestArtifact"] = self._version_node(latest_before) if latest_before else None
        node["artifactSequence"] = seq
        return {"artifact": node}

    def _m_create_manifest(self, input: dict[str, Any]) -> dict[str, Any]:
        self._entity(input.get("entityName"))
        v = self._version_by_id(input.get("artifactID"))
        if v is None:
            raise GraphQLError(f"artifact {input.get('artifactID')!r} not found")
        return self._manifest_payload(v)

    def _m_update_manifest(self, input: dict[str, Any]) -> dict[str, Any]:
        v = self._manifests.get(str(input.get("artifactManifestID")))
        if v is None:
            raise GraphQLError(f"manifest {input.get('artifactManifestID')!r} not found")
        return self._manifest_payload(v)

    def _manifest_payload(self, v: _VersionRec) -> dict[str, Any]:
        if v.manifest_id is None:
            v.manifest_id = self._new_id("ArtifactManifest")
            self._manifests[v.manifest_id] = v
        path = f"/storage/manifest/{urllib.parse.quote(v.manifest_id, safe='')}"
        return {
            "artifactManifest": {
                "id": v.manifest_id,
                "file": {"id": v.manifest_id, "uploadUrl": self._sign(path), "uploadHeaders": []},
            }
        }

    def _m_create_artifact_files(self, input: dict[str, Any]) -> dict[str, Any]:
        edges = []
        for spec in input.get("artifactFiles") or []:
            v = self._version_by_id(spec.get("artifactID"))
            if v is None:
                raise GraphQLError(f"artifact {spec.get('artifactID')!r} not found")
            name = spec["name"]
            storage_path = f"{v.id}/{name}"
            multipart = None
            if spec.get("uploadPartsInput"):
                upload_id = secrets.token_hex(8)
                multipart = {
                    "uploadID": upload_id,
                    "uploadUrlParts": [
                        {
                            "partNumber": part["partNumber"],
                            "uploadUrl": self._sign(
                                "/storage/part/{}/{}/{}".format(
                                    urllib.parse.quote(v.id, safe=""),
                                    upload_id,
                                    part["partNumber"],
                                )
                            ),
                        }
                        for part in spec["uploadPartsInput"]
                    ],
                }
            edges.append(
                {
                    "node": {
                        "storagePath": storage_path,
                        "uploadUrl": None if multipart else self._file_url(v, name),
                        "uploadHeaders": [],
                        "uploadMultipartUrls": multipart,
                        "artifact": {"id": v.id},
                    }
                }
            )
        return {"files": {"edges": edges}}

    def _m_complete_multipart(self, input: dict[str, Any]) -> dict[str, Any]:
        v = self._version_by_id(input.get("artifactID"))
        if v is None:
            raise GraphQLError(f"artifact {input.get('artifactID')!r} not found")
        name = str(input["storagePath"]).removeprefix(f"{v.id}/")
        parts_dir = v.dir / "parts" / str(input["uploadID"])
        dest = v.dir / "files" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        numbers = sorted(int(p["partNumber"]) for p in input.get("completedParts") or [])
        md5 = hashlib.md5()
        with dest.open("wb") as out:  # untested: wandb-core uploads in parts only huge files
            for n in numbers:
                with (parts_dir / str(n)).open("rb") as part:
                    while chunk := part.read(CHUNK):
                        out.write(chunk)
                        md5.update(chunk)
        shutil.rmtree(parts_dir, ignore_errors=True)
        v.files[name] = dest
        return {"digest": md5.hexdigest()}

    def _m_commit_artifact(self, input: dict[str, Any]) -> dict[str, Any]:
        v = self._version_by_id(input.get("artifactID"))
        if v is None:
            raise GraphQLError(f"artifact {input.get('artifactID')!r} not found")
        self._commit(v)
        return {"artifact": self._version_node(v)}

    def _m_use_artifact(self, input: dict[str, Any]) -> dict[str, Any]:
        entity = self._entity(input.get("entityName"))
        v = self._version_by_id(input.get("artifactID"))
        if v is None:
            raise GraphQLError(f"artifact {input.get('artifactID')!r} not found")
        pname = input.get("projectName") or "uncategorized"
        run = self._run(entity, pname, input.get("runName"))
        if run is None:
            raise GraphQLError(f"run {entity}/{pname}/{input.get('runName')} not found")
        if run not in v.used_by:
            v.used_by.append(run)
        return {"artifact": self._version_node(v)}

    def _m_update_artifact(self, input: dict[str, Any]) -> dict[str, Any]:
        v = self._version_by_id(input.get("artifactID"))
        if v is None:
            raise GraphQLError(f"artifact {input.get('artifactID')!r} not found")
        if input.get("metadata") is not None:
            v.metadata = json.loads(input["metadata"])
        if input.get("description") is not None:
            v.description = input["description"]
        return {"artifact": self._version_node(v)}

    # -- GraphQL entry -----------------------------------------------------------------------

    def graphql(self, body: dict[str, Any]) -> dict[str, Any]:
        """Answer one GraphQL request body (already recorded)."""
        query = body.get("query") or ""
        variables = dict(body.get("variables") or {})
        try:
            ops, fragments = _Parser(query).document()
        except GraphQLError as e:
            return {"data": None, "errors": [{"message": str(e)}]}
        op_name = body.get("operationName") or (ops[0].name if ops else "")
        op = next((o for o in ops if o.name == op_name), ops[0] if ops else None)
        if op is None or op_name not in SUPPORTED_OPS:
            with self._lock:
                self.unknown_ops.append(op_name)
                msg = f"unsupported operation {op_name!r} (not modelled by the test server)"
                self.errors.append((op_name, msg))
            return {"data": None, "errors": [{"message": msg}]}
        for key, value in op.defaults.items():
            variables.setdefault(key, _resolve_value(value, {}))

        def on_missing(type_name: str, field: str) -> None:
            self.missing_fields.append((op_name, type_name, field))

        executor = _Executor(fragments, variables, on_missing)
        with self._lock:
            root = self._mutation_root() if op.kind == "mutation" else self._query_root()
            try:
                data = executor.execute(root, op.selections)
            except GraphQLError as e:
                self.errors.append((op_name, str(e)))
                return {"data": None, "errors": [{"message": str(e), "path": [op_name]}]}
            except Exception as e:  # a bug here: answer it, so that it shows in the client
                msg = f"test server failed on {op_name!r}: {type(e).__name__}: {e}"
                self.errors.append((op_name, msg))
                return {"data": None, "errors": [{"message": msg, "path": [op_name]}]}
        return {"data": data}

    # -- non-GraphQL storage -------------------------------------------------------------------

    def storage_target(self, parts: list[str]) -> tuple[Path, Callable[[], None]] | None:
        """Where a PUT to /storage/... goes, and what to record once it is complete."""
        with self._lock:
            kind = parts[0] if parts else ""
            if kind == "artifact" and len(parts) >= 4 and parts[2] == "file":
                v = self._version_by_id(urllib.parse.unquote(parts[1]))
                if v is None:
                    return None
                name = urllib.parse.unquote("/".join(parts[3:]))
                dest = v.dir / "files" / name

                def done() -> None:
                    with self._lock:
                        v.files[name] = dest

                return dest, done
            if kind == "manifest" and len(parts) == 2:
                v = self._manifests.get(urllib.parse.unquote(parts[1]))
                if v is None:
                    return None
                dest = v.dir / "manifest.json"

                def done_manifest() -> None:
                    with self._lock:
                        v.manifest = dest

                return dest, done_manifest
            if kind == "part" and len(parts) == 4:
                v = self._version_by_id(urllib.parse.unquote(parts[1]))
                if v is None:
                    return None
                return v.dir / "parts" / parts[2] / parts[3], lambda: None
            if kind == "run" and len(parts) >= 3:
                rec = self._by_id.get(urllib.parse.unquote(parts[1]))
                if not isinstance(rec, _RunRec):
                    return None
                run = rec
                name = urllib.parse.unquote("/".join(parts[2:]))
                dest = self.root / "runs" / run.storage_id.replace("=", "") / name

                def done_run() -> None:
                    with self._lock:
                        run.files[name] = dest

                return dest, done_run
            return None

    def storage_source(self, parts: list[str]) -> Path | None:
        with self._lock:
            kind = parts[0] if parts else ""
            if kind == "artifact" and len(parts) >= 4 and parts[2] == "file":
                v = self._version_by_id(urllib.parse.unquote(parts[1]))
                if v is None:
                    return None
                return v.files.get(urllib.parse.unquote("/".join(parts[3:])))
            if kind == "manifest" and len(parts) == 2:
                v = self._manifests.get(urllib.parse.unquote(parts[1]))
                return None if v is None else v.manifest
            return None

    def artifact_file_by_digest(self, entity: str, hexdigest: str) -> Path | None:
        """GET /artifacts/<entity>/<md5 hex>: the fallback download URL of the SDK."""
        with self._lock:
            for c in self._collections.values():
                if c.entity != entity:
                    continue
                for v in c.versions:
                    if v.manifest is None or not v.manifest.exists():
                        continue
                    entries = json.loads(v.manifest.read_text()).get("contents", {})
                    for path, entry in entries.items():
                        digest = base64.b64decode(entry.get("digest", "")).hex()
                        if digest == hexdigest and path in v.files:
                            return v.files[path]
            return None

    def file_stream(self, entity: str, project: str, run_name: str, body: dict[str, Any]) -> None:
        with self._lock:
            proj = self._project(entity, project)
            run = self._run(entity, proj["name"], run_name) if proj else None
            if run is None:
                return
            files = body.get("files") or {}
            for line in (files.get("wandb-history.jsonl") or {}).get("content") or []:
                run.history.append(json.loads(line))
            for line in (files.get("wandb-summary.json") or {}).get("content") or []:
                run.summary.update(json.loads(line))
            if body.get("complete"):
                run.state = "finished" if not body.get("exitcode") else "failed"
                run.exit_code = body.get("exitcode")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that gave up (a timeout, a hang released late) is not an error here
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    wandb: WandbServer
    protocol_version = "HTTP/1.1"
    _unread = False

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # every method goes through here
    def _handle(self) -> None:
        server = self.wandb
        parsed = urllib.parse.urlsplit(self.path)
        path = parsed.path
        query = urllib.parse.parse_qs(parsed.query)
        length = int(self.headers.get("Content-Length") or 0)
        is_graphql = self.command == "POST" and path.rstrip("/").endswith("/graphql")
        body: bytes | None = None
        self._unread = length > 0 or "chunked" in self.headers.get("Transfer-Encoding", "")
        op, variables = "", {}
        payload: dict[str, Any] = {}
        if is_graphql or (self.command == "POST" and length <= 64 << 20):
            body = self._read_body(length)
        if is_graphql and body is not None:
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                payload = {}
            if not isinstance(payload, dict):
                payload = {}
            op = payload.get("operationName") or _op_name(payload.get("query") or "")
            variables = payload.get("variables") or {}
        with server._lock:
            server.calls.append(Call(self.command, path, op, copy.deepcopy(variables)))
            server.headers_seen.append(dict(self.headers.items()))
        while server.hang and not server._stopped.is_set():
            time.sleep(0.02)
        if server._stopped.is_set():
            self.close_connection = True
            return
        if server.fail_status is not None:
            return self._json(server.fail_status, {"errors": [{"message": "injected failure"}]})
        if server.refuse_all_keys:
            return self._json(401, {"errors": [{"message": "invalid api key"}]})
        if path.startswith("/storage/"):
            parts = path[len("/storage/") :].split("/")
            if not server._check_sig(path, query) and not self._authorized():
                return self._json(401, {"error": "bad signature"})
            if self.command == "PUT":
                return self._put_storage(parts, length)
            if self.command in ("GET", "HEAD"):
                src = server.storage_source(parts)
                return self._send_file(src)
            return self._json(405, {"error": "method not allowed"})
        if self.command in ("GET", "HEAD") and path in ("", "/", "/healthz", "/ready"):
            return self._json(200, {"ok": True})
        if not self._authorized():
            return self._json(401, {"errors": [{"message": "invalid api key"}]})
        if is_graphql:
            return self._json(200, server.graphql(payload))
        m = re.fullmatch(r"/files/([^/]+)/([^/]+)/([^/]+)/file_stream", path)
        if m and self.command == "POST":
            try:
                server.file_stream(
                    *(urllib.parse.unquote(g) for g in m.groups()), json.loads(body or b"{}")
                )
            except ValueError:
                return self._json(400, {"error": "bad json"})
            return self._json(200, {"exitcode": None, "limits": {}})
        if path.startswith("/sdk/otel/"):
            return self._json(200, {})
        m = re.fullmatch(r"/artifacts/([^/]+)/([0-9a-f]{32})", path) or re.fullmatch(
            r"/artifactsV2/[^/]+/([^/]+)/(?:[^/]*/)+([0-9a-f]{32})/[^/]+", path
        )
        if m and self.command in ("GET", "HEAD"):
            return self._send_file(
                server.artifact_file_by_digest(urllib.parse.unquote(m.group(1)), m.group(2))
            )
        if body is None and length:
            self._drain(length)
        return self._json(404, {"error": f"no route for {self.command} {path}"})

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = _handle

    def _authorized(self) -> bool:
        server = self.wandb
        if server.refuse_all_keys:
            return False
        auth = self.headers.get("Authorization") or ""
        key = None
        if auth.startswith("Basic "):
            try:
                key = base64.b64decode(auth[6:]).decode().partition(":")[2]
            except ValueError:
                key = None
        elif auth.startswith("Bearer "):
            key = auth[7:]
        key = key or self.headers.get("X-Wandb-Api-Key")
        return key is not None and hmac.compare_digest(key, server.api_key)

    def _read_body(self, length: int) -> bytes:
        self._unread = False
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return b"".join(self._chunks())
        return self.rfile.read(length) if length else b""

    def _chunks(self) -> Iterator[bytes]:
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return
            yield self.rfile.read(size)
            self.rfile.readline()

    def _drain(self, length: int) -> None:
        self._unread = False
        while length > 0:
            got = self.rfile.read(min(CHUNK, length))
            if not got:
                return
            length -= len(got)

    def _put_storage(self, parts: list[str], length: int) -> None:
        target = self.wandb.storage_target(parts)
        if target is None:
            self._drain(length)
            return self._json(404, {"error": "no such upload target"})
        dest, done = target
        self._unread = False
        dest.parent.mkdir(parents=True, exist_ok=True)
        md5 = hashlib.md5()
        tmp = dest.with_name(dest.name + f".part-{secrets.token_hex(4)}")
        with tmp.open("wb") as out:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                for chunk in self._chunks():
                    out.write(chunk)
                    md5.update(chunk)
            else:
                left = length
                while left > 0:
                    chunk = self.rfile.read(min(CHUNK, left))
                    if not chunk:
                        break
                    out.write(chunk)
                    md5.update(chunk)
                    left -= len(chunk)
                if left > 0:
                    tmp.unlink()
                    self.close_connection = True
                    return
        tmp.replace(dest)
        done()
        self.send_response(200)
        self.send_header("ETag", f'"{md5.hexdigest()}"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_file(self, src: Path | None) -> None:
        if src is None or not src.is_file():
            return self._json(404, {"error": "not found"})
        size = src.stat().st_size
        start, end = 0, size - 1
        rng = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range") or "")
        if rng and size:
            if rng.group(1):
                start = int(rng.group(1))
                end = int(rng.group(2)) if rng.group(2) else size - 1
            else:
                start = max(0, size - int(rng.group(2)))
            end = min(end, size - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        if self.command == "HEAD":
            return
        with src.open("rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        if self._unread:
            # the request body was not read: the connection cannot be reused
            self.close_connection = True
        try:
            self.send_response(
                status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
            )
        except ValueError:
            self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def reset_wandb() -> None:
    """Shut down wandb's process singleton (and its wandb-core service), if wandb is imported.

    The next wandb call starts a fresh one that reads the environment again.
    """
    wandb = sys.modules.get("wandb")
    if wandb is not None and hasattr(wandb, "teardown"):
        wandb.teardown()


def _op_name(query: str) -> str:
    m = re.search(r"\b(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)", query)
    return m.group(1) if m else ""
