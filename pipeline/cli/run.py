"""`run` and `status`: open the project, plan, run what is stale, and answer."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from pipeline.cli import arguments
from pipeline.cli import text as cli_text
from pipeline.core.errors import UsageError, did_you_mean
from pipeline.state import memo

EXIT_OK = arguments.EXIT_OK


def run(args: argparse.Namespace) -> int:
    """`run`: plan, run what is stale, rewrite the lock, say what ran and where it is."""
    from pipeline.state.collect import in_use

    if not os.access(args.workspace, os.W_OK):  # checked first, so that nothing is half-done
        raise UsageError(
            f"workspace `{args.workspace}` is not writable; make it writable or run in "
            "another folder (`--workspace DIR`)"
        )
    # gc removes nothing this run plans with; each project opened is closed at the end.
    with in_use(args.workspace, arguments.gc_waiting), contextlib.ExitStack() as opened:
        return _run_held(args, opened)


def _run_held(args: argparse.Namespace, opened: contextlib.ExitStack) -> int:
    stage, overrides_argv, tracking = arguments.stage_and_overrides(args.args)
    if args.frozen and (overrides_argv or args.reset or args.use or args.only or args.pull):
        raise UsageError(
            "`--frozen` reproduces the lock as it is, running every stage: drop the overrides, "
            "--reset, --use, --only and --pull"
        )
    if not args.dry_run:  # what a killed `run`'s jobs finished is reused, not run again
        from pipeline.state.booking import adopt

        adopt(args.workspace)
    project, steps, options = _planned(args, stage, overrides_argv, tracking, True, opened)
    if args.dry_run:
        if any(s.action == "run" for s in steps):  # checked as `run` checks: the full specs
            if project.declared_only:
                project, steps, options = _planned(
                    args, stage, overrides_argv, tracking, False, opened
                )
            project.check(steps)
        _answer(args, project, steps, cli_text.steps(steps, args.json, planned=True))
        return EXIT_OK
    if all(s.state == "fresh" for s in steps):  # nothing to run or record: say so at once
        _answer(args, project, steps, cli_text.steps(steps, args.json, planned=False))
        return EXIT_OK
    if project.declared_only:  # something runs: that needs the stages themselves
        project, steps, options = _planned(args, stage, overrides_argv, tracking, False, opened)
    from pipeline.execution.runner import execute  # Hydra and the W&B callback: only to run stages

    team = _team_cache(project) if args.pull else None
    done = execute(project, steps, options, cli_text.Progress(quiet=args.json), team)
    project.record()
    if args.json:
        print(cli_text.steps(done, True, planned=False), end="")
    elif all(s.action != "run" for s in done):
        print(cli_text.all_fresh(done))
    else:
        found = project.store.path
        print(cli_text.results(done, lambda pin: found(pin.name, pin.version)), end="")
    if args.frozen and not args.json:
        print(
            f"reproduced: every fingerprint and digest of these {len(done)} stages matches the lock"
        )
    return EXIT_OK


def _planned(
    args: argparse.Namespace,
    stage: str | None,
    overrides_argv: list[str],
    tracking: dict[str, str],
    declarations: bool,
    opened: contextlib.ExitStack,
) -> tuple[Any, list[Any], Any]:
    """Open the project (closed with ``opened``) and plan this `run`: the project, its steps
    and the options."""
    from pipeline.core import graph
    from pipeline.core.plan import Options
    from pipeline.execution.project import open_project

    project, overrides = open_project(
        args.workspace,
        overrides_argv,
        args.reset,
        multirun=args.multirun,
        since_ns=args.started_ns,
        declarations=declarations,
    )
    opened.callback(project.close)
    project.wandb.update(tracking)
    project.launcher = [a for a in args.args if arguments.is_launcher(a)]
    targets = [graph.check_stage(project.graph, stage)] if stage else graph.sinks(project.graph)
    in_scope = targets if args.only else graph.order(project.graph, targets)
    for name in overrides:
        if name not in in_scope:
            raise UsageError(
                f"overrides for `{name}` given, but this command does not run `{name}`; "
                f"use `python -m pipeline run {name} ...`"
            )
    forced = in_scope if args.frozen else targets if args.force else []
    options = Options(
        force=frozenset(forced),
        frozen=args.frozen,
        only=args.only,
        use=dict(_parse_use(project, u, in_scope) for u in args.use),
    )
    return project, project.plan(targets, options), options


def _parse_use(project: Any, text: str, in_scope: list[str]) -> tuple[str, str]:
    """``model:v0`` or ``dataset-digits:v1`` -> (the artifact's name in the DAG, version)."""
    from pipeline.core.graph import producers
    from pipeline.spec import safe_name

    name, sep, ref = text.partition(":")
    if not sep or not name or not ref:
        raise UsageError(f"`--use {text}` should be NAME:VERSION, e.g. `--use model:v0`")
    if not (safe_name(name) and safe_name(ref)):
        raise UsageError(
            f"`--use {text}`: artifact names, versions and aliases are letters, digits, "
            "`-`, `_` and `.` (no `/`, `..` or absolute paths), e.g. `--use model:v0`"
        )
    made_by = producers(project.graph)
    stored = {a: k for s in project.states.values() for k, a in s.artifacts.items()}
    slot = name if name in made_by else stored.get(name)
    if slot is None:
        known = sorted({*made_by, *stored})
        raise UsageError(f"`--use {text}`: no artifact `{name}`{did_you_mean(name, known)}")
    if made_by[slot] not in in_scope:
        raise UsageError(f"`--use {text}`: nothing this command runs uses `{name}`")
    return slot, ref


def status(args: argparse.Namespace) -> int:
    """`status`: each stage fresh, stale or never run, with the reasons."""
    from pipeline.core import graph
    from pipeline.execution.project import open_project

    stage, overrides, _ = arguments.stage_and_overrides(args.args)
    project, _ = open_project(
        args.workspace, overrides, multirun=args.multirun, since_ns=args.started_ns
    )
    with contextlib.closing(project):
        targets = [graph.check_stage(project.graph, stage)] if stage else list(project.graph)
        steps = project.plan(targets)
        index = project.store.runs
        runs = {s.stage: index.tracking(s.fingerprint) if s.fingerprint else None for s in steps}
        _answer(args, project, steps, cli_text.status(steps, runs, args.json))
    return EXIT_OK


def _answer(args: argparse.Namespace, project: Any, steps: Sequence[Any], text: str) -> None:
    """Print the answer; remember it when every stage is fresh (see `pipeline.state.memo`)."""
    print(text, end="")
    project.record()
    if all(s.state == "fresh" for s in steps):
        key = memo.command_key(vars(args))
        memo.remember(project.store.root, key, text, project.watched(steps), args.started_ns)


def _team_cache(project: Any) -> Any:
    from pipeline.execution import remote
    from pipeline.execution.pull import TeamCache

    arguments.need_credentials("python -m pipeline run --pull")
    entity, name = project.wandb.get("entity"), project.wandb.get("project")
    return TeamCache(
        lambda: remote.where(entity, name), lambda text: print(text, file=sys.stderr, flush=True)
    )


COMMANDS = {"run": run, "status": status}
