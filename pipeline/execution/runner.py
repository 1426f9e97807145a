"""Runs a plan: each stage as a hydra-zen task on store paths, outputs committed, lock rewritten."""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from filelock import FileLock, Timeout

from pipeline.core import lockfile
from pipeline.core.errors import NotReproduced
from pipeline.core.lock import InputPin, StageLock
from pipeline.core.paths import lock_cache, locks_dir
from pipeline.core.plan import Options, Step, decide
from pipeline.execution.project import Project
from pipeline.execution.pull import TeamCache
from pipeline.execution.wave import run_wave

Report = Callable[[str, Step], None]


def execute(
    project: Project,
    steps: Sequence[Step],
    options: Options,
    report: Report,
    team: TeamCache | None = None,
) -> list[Step]:
    """Carry out the steps stage by stage; the lock is rewritten after each stage.

    A stage's members to run form one wave, launched as one Hydra multirun, so that a
    parallel launcher (``hydra/launcher=joblib``) runs them side by side. With a
    ``team`` cache, a member whose fingerprint already ran on W&B is pulled instead.
    """
    project.check(steps)
    known: dict[tuple[str, str], InputPin | None] = {}
    done: list[Step] = []
    # One W&B group per invocation: the runs of one `pipeline run` sit together.
    group = f"pipeline-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    for _, members in itertools.groupby(steps, key=lambda s: project.states[s.stage].stage):
        with contextlib.ExitStack() as claims:
            ready = _claim(project, members, options, known, report, claims)
            if team is not None:
                ready = [_from_team(project, step, options, team) for step in ready]
            wave = [step for step in ready if step.action == "run"]
            for step in wave:
                if options.frozen:
                    _check_frozen_before(project, step)
                report("start", step)
            finished = {s.stage: s for s in run_wave(project, wave, group, report)} if wave else {}
        for step in ready:
            step = finished.get(step.stage, step)
            if options.frozen and step.stage in finished:
                _check_frozen_after(project, step)
            report("done", step)
            if step.action != "pin":
                _record(project, step)
            for artifact, pin in step.outputs.items():
                known[(step.stage, artifact)] = InputPin(pin.name, pin.version, pin.digest)
            done.append(step)
    return done


def _from_team(project: Project, step: Step, options: Options, team: TeamCache) -> Step:
    """A member to run, pulled from W&B when its fingerprint ran there (and then recorded)."""
    state = project.states[step.stage]
    if step.action != "run" or step.fingerprint is None or state.stage in options.force:
        return step
    types = {o.name: o.type for o in project.specs[state.stage].logs}
    outputs = {k: (name, types[k]) for k, name in state.artifacts.items()}
    pulled, run = team.reuse(project.store, step, outputs)
    if run is not None:
        where = team.where()
        runs = project.store.runs
        run_id = runs.start(
            step.stage,
            step.fingerprint,
            step.inputs,
            state.config,
            state.code_digest,
            pulled.environment,
        )
        tracking = {
            "id": run,
            "mode": "online",
            "project": where.project if where else None,
            "entity": where.entity if where else None,
            "pulled": True,
        }
        runs.end(run_id, pulled.outputs, pulled.metrics, tracking)
    return pulled


def _claim(
    project: Project,
    members: Iterable[Step],
    options: Options,
    known: dict[tuple[str, str], InputPin | None],
    report: Report,
    claims: contextlib.ExitStack,
) -> list[Step]:
    """The wave's steps, each member to run claimed for this process by its fingerprint.

    Another process of this workspace (a second terminal) may be running the same
    fingerprint: we wait for it, say so, and then reuse what it made. The claims are
    file locks, so a killed process leaves nothing that blocks.
    """
    ready = [_ready(project, step, options, known) for step in members]
    running = sorted((s for s in ready if s.action == "run"), key=lambda s: s.fingerprint or "")
    for step in running:
        claim = FileLock(locks_dir(project.store.root) / f"{step.fingerprint}.lock")
        try:
            claim.acquire(timeout=0)
        except Timeout:
            report("wait", step)
            claim.acquire()
        claims.callback(claim.release)
    # What another process finished while we waited is now in the run cache.
    return [
        _ready(project, replace(step, fingerprint=None), options, known)
        if step.action == "run" and step.stage not in options.force
        else step
        for step in ready
    ]


def _ready(
    project: Project, step: Step, options: Options, known: dict[tuple[str, str], InputPin | None]
) -> Step:
    """Decide again once upstream outputs exist: an input rebuilt unchanged may make it fresh."""
    if step.action != "run" or step.fingerprint is not None:
        return step
    entry = project.lock.stages.get(step.stage)
    member = project.members[step.stage]
    return decide(member, project.states[step.stage], entry, project.store, options, known)


def _check_frozen_before(project: Project, step: Step) -> None:
    entry = project.lock.stages.get(step.stage)
    if entry is None:
        raise NotReproduced(
            f"`--frozen`: the lock pins nothing for `{step.stage}`; run it without --frozen first"
        )
    if step.fingerprint != entry.fingerprint:
        why = "; ".join(r for r in step.reasons if r != "forced") or "fingerprint changed"
        raise NotReproduced(f"stage `{step.stage}` no longer matches the lock: {why}")


def _check_frozen_after(project: Project, step: Step) -> None:
    pinned = project.lock.stages[step.stage].outputs
    for key, pin in sorted(step.outputs.items()):
        want = pinned.get(key)
        if want is None or want.digest != pin.digest:
            expected = f"{want.digest} ({want.name}:{want.version})" if want else "nothing"
            raise NotReproduced(
                f"stage `{step.stage}` did not reproduce the lock: artifact `{pin.name}` has "
                f"digest {pin.digest}, the lock pins {expected}; the lock is left unchanged"
            )


def _record(project: Project, step: Step) -> None:
    state = project.states[step.stage]
    assert step.fingerprint is not None
    entry = StageLock(
        fingerprint=step.fingerprint,
        code_digest=state.code_digest,
        code=dict(state.code),
        config=state.config,
        overrides=state.overrides,
        inputs=dict(step.inputs),
        outputs=dict(step.outputs),
        metrics=dict(step.metrics),
        environment=dict(step.environment),
    )
    # Read again under a file lock: another process may have recorded other stages.
    with FileLock(locks_dir(project.store.root) / "lockfile.lock"):
        project.lock = lockfile.update(
            project.lock_path, step.stage, entry, lock_cache(project.workspace)
        )
