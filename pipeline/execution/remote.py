"""W&B as the team's store: reach it within a bound, find a version, download it (public API)."""

from __future__ import annotations

import netrc
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from pipeline.core.errors import RemoteError

T = TypeVar("T")

# The most any single W&B request of ours may take: a hanging server costs this, then we
# go on offline (runs) or stop with one line (pull, sync). `PIPELINE_WANDB_TIMEOUT` sets it.
TIMEOUT_S = 20.0
DEFAULT_PROJECT = "lineage"


def timeout_s() -> float:
    """The bound on one W&B request, in seconds (`$PIPELINE_WANDB_TIMEOUT`, else 20)."""
    try:
        return max(1.0, float(os.environ.get("PIPELINE_WANDB_TIMEOUT", TIMEOUT_S)))
    except ValueError:
        return TIMEOUT_S


def client_env() -> dict[str, str]:
    """Environment that bounds wandb's own retries and timeouts (wandb-core reads it too)."""
    seconds = str(int(timeout_s()))
    return {
        "WANDB_HTTP_TIMEOUT": seconds,
        "WANDB_X_GRAPHQL_RETRY_MAX": "2",
        "WANDB_X_FILE_TRANSFER_RETRY_MAX": "2",
        "WANDB_X_FILE_TRANSFER_TIMEOUT_SECONDS": seconds,
        "WANDB_X_FILE_STREAM_RETRY_MAX": "2",
        "WANDB_X_FILE_STREAM_TIMEOUT_SECONDS": seconds,
    }


def credentials_configured() -> bool:
    """Whether a W&B API key is set in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str | None) -> str:
    """``online``, ``offline`` or ``disabled``: the option, else WANDB_MODE, else by key."""
    chosen = mode or os.environ.get("WANDB_MODE") or ""
    if chosen in ("online", "offline", "disabled"):
        return chosen
    if chosen == "dryrun":
        return "offline"
    return "online" if credentials_configured() else "offline"


def run_bounds() -> dict[str, Any]:
    """Settings that bound every wait on the server (init, requests, retries, finish)."""
    seconds = timeout_s()
    return {
        "init_timeout": seconds,
        "finish_timeout": 3 * seconds,
        "x_graphql_timeout_seconds": seconds,
        "x_graphql_retry_max": 2,
        "x_file_transfer_timeout_seconds": seconds,
        "x_file_transfer_retry_max": 2,
        "x_file_stream_timeout_seconds": seconds,
        "x_file_stream_retry_max": 2,
    }


def bounded(call: Callable[[], T], what: str, seconds: float | None = None) -> T:
    """``call()``, or a `RemoteError` naming ``what`` once ``seconds`` have passed.

    The call runs on a daemon thread: wandb's public API retries for minutes on its
    own, and a hanging server would otherwise hold the command (and its exit) forever.
    """
    limit = timeout_s() if seconds is None else seconds
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, name=f"wandb: {what}", daemon=True)
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        raise RemoteError(f"W&B did not answer within {limit:.0f} s ({what})")
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, RemoteError):
            raise error
        raise RemoteError(f"W&B failed ({what}): {short(error)}") from error
    value: T = outcome["value"]
    return value


def short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass(frozen=True)
class Where:
    """The W&B entity and project that runs and artifacts go to."""

    entity: str
    project: str

    def path(self, name: str, ref: str) -> str:
        """``entity/project/name:ref``, as the public API names an artifact version."""
        return f"{self.entity}/{self.project}/{name}:{ref}"


def forget_blank_mode() -> None:
    """Drop a blank WANDB_MODE (``export WANDB_MODE=``): no choice, as :func:`resolve_mode`
    reads it, but wandb's settings refuse it, in ``wandb.init`` and ``wandb.Api`` alike."""
    if os.environ.get("WANDB_MODE") == "":
        del os.environ["WANDB_MODE"]


def _api() -> Any:
    forget_blank_mode()
    os.environ.update({k: v for k, v in client_env().items() if k not in os.environ})
    os.environ.setdefault("WANDB_SILENT", "true")  # our lines say what was pulled
    import wandb

    return wandb.Api(timeout=int(timeout_s()))


def default_entity() -> str:
    """The viewer's default entity on the W&B server (one request, bounded)."""

    def ask() -> str:
        entity = _api().default_entity
        if not entity:
            raise RemoteError("W&B gave no default entity for this API key; pass wandb.entity=")
        return str(entity)

    return bounded(ask, "who am I")


def where(entity: str | None = None, project: str | None = None) -> Where:
    """Entity and project: the options, else $WANDB_ENTITY/$WANDB_PROJECT, else W&B's default."""
    chosen = entity or os.environ.get("WANDB_ENTITY") or default_entity()
    return Where(chosen, project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT)


@dataclass(frozen=True)
class RemoteVersion:
    """An artifact version on W&B, as far as a pull needs it."""

    name: str
    version: str
    digest: str
    metadata: dict[str, Any] = field(default_factory=dict)
    run: str = ""  # id of the W&B run that logged it
    handle: Any = field(default=None, compare=False, repr=False)


def _remote(artifact: Any, name: str) -> RemoteVersion:
    return RemoteVersion(
        name,
        str(artifact.version),
        str(artifact.digest),
        dict(artifact.metadata or {}),
        "",
        artifact,
    )


def _missing(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "not found" in text or "does not exist" in text or "could not find" in text


def lookup(place: Where, name: str, ref: str, type_: str) -> RemoteVersion | None:
    """The version ``name:ref`` on W&B, ``None`` if the server has no such version."""

    def ask() -> RemoteVersion | None:
        try:
            artifact = _api().artifact(place.path(name, ref), type=type_)
        except Exception as exc:
            if _missing(exc):
                return None
            raise
        return _remote(artifact, name)

    return bounded(ask, f"look up {place.path(name, ref)}")


def find_fingerprint(place: Where, name: str, type_: str, fingerprint: str) -> RemoteVersion | None:
    """The newest version of ``name`` on W&B whose metadata carries this fingerprint."""
    return _find(place, name, type_, lambda a: (a.metadata or {}).get("fingerprint") == fingerprint)


def find_digest(place: Where, name: str, type_: str, digest: str) -> RemoteVersion | None:
    """The version of ``name`` on W&B with this digest (W&B dedups: there is one at most)."""
    return _find(place, name, type_, lambda a: str(a.digest) == digest)


def _find(
    place: Where, name: str, type_: str, wanted: Callable[[Any], bool]
) -> RemoteVersion | None:
    """The newest version of ``name`` on W&B that is ``wanted``, with the run that logged it."""

    def ask() -> RemoteVersion | None:
        api, path = _api(), f"{place.entity}/{place.project}/{name}"
        # Listing a collection that does not exist fails to parse, rather than saying so.
        if not api.artifact_collection_exists(path, type_):
            return None
        found = [a for a in api.artifacts(type_, path) if wanted(a)]
        if not found:
            return None
        newest = max(found, key=lambda a: int(str(a.version).removeprefix("v")))
        run = newest.logged_by()
        return RemoteVersion(
            name,
            str(newest.version),
            str(newest.digest),
            dict(newest.metadata or {}),
            str(run.id) if run is not None else "",
            newest,
        )

    return bounded(ask, f"look for a version of {name}")


def download(version: RemoteVersion, folder: Path) -> None:
    """Download a version's files into ``folder`` (bounded per byte rate, not in total)."""
    artifact = version.handle
    if artifact is None:
        raise RemoteError(f"`{version.name}:{version.version}` was not looked up on W&B first")
    size = int(getattr(artifact, "size", 0) or 0)
    # At least 20 MB/s, or the download is taken to hang.
    limit = timeout_s() + size / 20e6
    bounded(
        lambda: artifact.download(root=str(folder), skip_cache=True),
        f"download {version.name}:{version.version}",
        limit,
    )
