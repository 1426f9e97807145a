"""A stage's wave, from the submitting process: number, launch, then book what jobs handed back.

Only this process writes the store's index. Before the launch it records each member's
run as started and gives each job its hand-back folder and the version numbers it may
use (held for this process while the wave runs); after it, it reads every job's record,
records the versions and runs in the index, and reports the first failure in one line,
naming the SLURM job and its log when the member ran on a cluster.
"""

from __future__ import annotations

import collections
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.core.errors import PipelineError, StageFailed
from pipeline.core.plan import Step
from pipeline.execution.job import FAILURES, ArtifactRef, raised
from pipeline.execution.launch import MemberJob, WaveTask, launch_wave, quote
from pipeline.execution.project import Project
from pipeline.state import booking, handback
from pipeline.state.objects import remove
from pipeline.state.store import Store

log = logging.getLogger(__name__)
Report = Callable[[str, Step], None]
_POLL = 2.0  # seconds between looks at jobs still running after the launcher gave up


@dataclass(frozen=True)
class _Member:
    step: Step
    job: MemberJob
    run_id: int

    @property
    def folder(self) -> Path:
        return Path(self.job.handback)


def run_wave(project: Project, wave: Sequence[Step], group: str, report: Report) -> list[Step]:
    """Launch the wave's members as one multirun; their steps with outputs filled in."""
    stage = project.states[wave[0].stage].stage
    spec, store = project.spec(stage), project.store
    names = [project.states[s.stage].artifacts[o.name] for s in wave for o in spec.logs]
    with store.reserving(names):
        members = list(_members(project, store, wave, names))
        stamp = f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{uuid.uuid4().hex[:6]}"
        overrides = [
            *project.launcher,
            *(f"hydra.callbacks.wandb.{k}={quote(v)}" for k, v in sorted(project.wandb.items())),
        ]
        task = WaveTask(project.workspace, stage, group, [m.job for m in members])
        launched: BaseException | None = None
        try:
            # The project's configs are in Hydra's store from its opening (`Project.close`).
            launch_wave(task, spec, project.workspace / "outputs" / stage / stamp, overrides)
        except (Exception, KeyboardInterrupt) as exc:
            launched = exc
        return _book(store, members, launched, report)


def _members(
    project: Project, store: Store, wave: Sequence[Step], names: Sequence[str]
) -> Iterator[_Member]:
    """Each member's job: its inputs' paths, its run started, its folder and numbers."""
    types = {o.name: o.type for s in project.specs.values() for o in s.logs}
    numbers = {name: store.numbers(name) for name in sorted(set(names))}
    taken: collections.Counter[str] = collections.Counter()
    for step in wave:
        state = project.states[step.stage]
        inputs = {
            slot: ArtifactRef(
                pin.name,
                types[slot.split("@", 1)[0]],
                store.path(pin.name, pin.version),
                pin.version,
                pin.digest,
            )
            for slot, pin in step.inputs.items()
        }
        versions = {}
        for key, name in state.artifacts.items():
            known, first = numbers[name]
            versions[key] = handback.Versions(known, first + taken[name])
            taken[name] += 1
        fingerprint = step.fingerprint or ""
        run_id = store.runs.start(
            step.stage, fingerprint, step.inputs, state.config, state.code_digest
        )
        folder = store.handback()  # after the index took the run: a busy one leaves no folder
        handback.write(folder, booking.MEMBER, {"run": run_id, "member": step.stage})
        job = MemberJob(
            step.stage,
            fingerprint,
            state.config,
            state.code_digest,
            inputs,
            state.artifacts,
            versions,
            str(folder),
        )
        yield _Member(step, job, run_id)


def _book(
    store: Store, members: Sequence[_Member], launched: BaseException | None, report: Report
) -> list[Step]:
    """Record what every job handed back; raise the first failure (member order), if any.

    A member's folder goes once it is booked; one whose job still runs on the cluster
    (this process was interrupted) stays for the next `run` to book.
    """
    interrupted = isinstance(launched, KeyboardInterrupt)
    if launched is not None and not interrupted:
        _wait_for_the_rest(members)
    done: list[Step] = []
    failures: list[PipelineError] = []
    running: list[str] = []
    for member in members:
        started = handback.read(member.folder, handback.STARTED)
        result = handback.read(member.folder, handback.RESULT)
        if result is None and handback.running(started):
            running.append(str(started and started.get("job_id")))
            continue
        if result is not None and started and "executor" in started:
            for note in result.get("notes", []):  # its log is on the cluster: say them here
                report("note", replace(member.step, reasons=(note,)))
        if result is not None and "outputs" in result:
            outputs = booking.book(store, member.run_id, result)
            metrics, environment = dict(result["metrics"]), dict(result["environment"])
            done.append(
                replace(member.step, outputs=outputs, metrics=metrics, environment=environment)
            )
        else:
            error = raised(member.job.handback)  # in this process: with the traceback
            failed = error is not None or result is not None
            booking.book_failure(store, member.run_id, result, interrupted=not failed)
            if error is None and result is not None:
                kind = FAILURES.get(str(result.get("kind")), StageFailed)
                error = kind(f"{result.get('error')}{handback.where(started)}")
            elif error is None and not interrupted and (started or launched is None):
                error = _unfinished(member, started)
            if error is not None:
                failures.append(error)
        remove(member.folder)
    if interrupted:
        if running:
            log.warning(
                "SLURM jobs %s still run; the next `run` books what they make, or "
                "`scancel %s` stops them",
                ", ".join(running),
                " ".join(running),
            )
        assert launched is not None
        raise launched
    if failures:
        first = failures[0]
        if len(failures) > 1:
            first = type(first)(f"{first} ({len(failures) - 1} other members failed too)")
            first.__cause__ = failures[0].__cause__
        raise first
    if launched is not None:
        if isinstance(launched, PipelineError):
            raise launched
        raise StageFailed(f"the launcher failed: {launched}") from launched
    return done


def _unfinished(member: _Member, started: Mapping[str, Any] | None) -> PipelineError:
    state = handback.slurm_state(started)
    said = f" (SLURM: {state})" if state else ""
    return StageFailed(
        f"stage `{member.step.stage}` did not finish{handback.where(started)}{said}: it was "
        "cancelled, or killed for its time or memory limit; rerun to resume it"
    )


def _wait_for_the_rest(members: Sequence[_Member]) -> None:
    """The launcher stops at the first failed job; wait for the others the cluster still runs."""
    said = False
    while True:
        pending = [
            m
            for m in members
            if handback.read(m.folder, handback.RESULT) is None
            and handback.running(handback.read(m.folder, handback.STARTED))
        ]
        if not pending:
            return
        if not said:
            log.warning("waiting for %d more jobs of this wave to end", len(pending))
            said = True
        time.sleep(_POLL)
