"""Fetch from W&B what the lock pins (`pull`), or what a fingerprint already made (`run --pull`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from pipeline.core.errors import RemoteError, StoreError, VersionTaken
from pipeline.core.lock import Lock, OutputPin
from pipeline.core.plan import Step
from pipeline.core.sweep import stage_of
from pipeline.execution import remote
from pipeline.execution.remote import RemoteVersion, Where
from pipeline.state.store import Store


def fetch(
    store: Store, found: RemoteVersion, type_: str, digest: str, version: str | None = None
) -> OutputPin:
    """Download a W&B version, check that its files hash to ``digest``, and commit it.

    It becomes ``version`` (what a lock pins), which must be free here; without one, W&B's
    own number where that is free, else the store's next one.
    """
    staging = store.staging()
    try:
        remote.download(found, staging)
        try:
            wanted = version or found.version
            pin, _ = store.commit_version(staging, found.name, type_, wanted, digest)
        except VersionTaken:
            if version is not None:
                raise
            pin, _ = store.commit_version(staging, found.name, type_, None, digest)
        return pin
    finally:
        store.clean_tmp(staging)


@dataclass(frozen=True)
class Pulled:
    """One version `pull` brought into the store, or found there already."""

    key: str  # the lock block
    pin: OutputPin
    fetched: bool


def pull_locked(
    store: Store,
    lock: Lock,
    keys: Iterable[str],
    place: Where,
    report: Callable[[Pulled], None] = lambda pulled: None,
) -> list[Pulled]:
    """Fetch every version the lock's blocks ``keys`` pin that the store lacks or has damaged.

    Each is looked up by name and version, its digest checked against the lock's before
    and after the download; anything else is refused with nothing committed.
    """
    done = []
    for key in keys:
        for pin in lock.stages[key].outputs.values():
            if store.damage(pin) is None:
                item = Pulled(key, pin, fetched=False)
            else:
                item = Pulled(key, _pull_one(store, key, pin, place), fetched=True)
            report(item)
            done.append(item)
    return done


def _pull_one(store: Store, key: str, pin: OutputPin, place: Where) -> OutputPin:
    again = f"`python -m pipeline run {stage_of(key)}`"
    found = remote.lookup(place, pin.name, pin.version, pin.type)
    if found is None or found.digest != pin.digest:
        # W&B may number a version otherwise (made in parallel, or after a disabled run):
        # the digest is the identity.
        found = remote.find_digest(place, pin.name, pin.type, pin.digest)
    if found is None:
        raise RemoteError(
            f"W&B has no `{pin.name}:{pin.version}` (digest {pin.digest}) in "
            f"`{place.entity}/{place.project}`, pinned by `{key}`; sync it from the workspace "
            f"that made it, or recompute it with {again}"
        )
    try:
        return fetch(store, found, pin.type, pin.digest, pin.version)
    except StoreError as exc:
        raise RemoteError(
            f"pulling `{pin.name}:{pin.version}` from W&B: {exc} (recompute it with {again})"
        ) from exc


class TeamCache:
    """The run cache on W&B: a version whose metadata carries the step's fingerprint.

    Asked before a stage runs (`run --pull`); when W&B has every output of that
    fingerprint, they are downloaded, checked and committed instead of running the stage.
    When W&B cannot be reached, says so once and lets stages run here.
    """

    def __init__(self, place: Callable[[], Where], warn: Callable[[str], None]) -> None:
        self._place, self._warn = place, warn
        self._where: Where | None = None
        self._off = False

    def where(self) -> Where | None:
        """Where to look, or ``None`` once W&B proved unreachable."""
        if self._where is None and not self._off:
            try:
                self._where = self._place()
            except RemoteError as exc:
                self._give_up(exc)
        return self._where

    def _give_up(self, exc: RemoteError) -> None:
        self._off = True
        self._warn(f"warning: {exc}; running stages here instead of pulling them")

    def reuse(
        self, store: Store, step: Step, outputs: dict[str, tuple[str, str]]
    ) -> tuple[Step, str | None]:
        """``step`` as a reuse of what W&B has for its fingerprint, with the W&B run that
        made it; or ``step`` unchanged and ``None``.

        ``outputs`` maps each logical output to its (stored name, type).
        """
        place = self.where()
        if place is None or step.fingerprint is None:
            return step, None
        try:
            hits = {}
            for logical, (name, type_) in outputs.items():
                hit = remote.find_fingerprint(place, name, type_, step.fingerprint)
                if hit is None:
                    return step, None
                hits[logical] = (hit, type_)
            pins = {k: fetch(store, hit, t, hit.digest) for k, (hit, t) in hits.items()}
        except RemoteError as exc:
            self._give_up(exc)
            return step, None
        first = next(iter(hits.values()))[0]
        metrics = dict(first.metadata.get("metrics") or {})
        environment = dict(first.metadata.get("environment") or {})
        run = first.run or "?"
        reason = f"same fingerprint ran on W&B (run {run}): outputs pulled"
        pulled = replace(
            step,
            action="reuse",
            reasons=(*step.reasons, reason),
            outputs=pins,
            metrics=metrics,
            environment=environment,
        )
        return pulled, run
