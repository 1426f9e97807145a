"""The command line: parses, composes, plans, runs, and prints (the only module that prints)."""

from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import shutil
import signal
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.cli import show as cli_inspect
from pipeline.cli import text as cli_text
from pipeline.core import paths
from pipeline.core.errors import PipelineError, RemoteError, StageFailed, UsageError, did_you_mean
from pipeline.core.paths import LOCK_NAME
from pipeline.state import memo

EXIT_OK = 0  # failures exit with their error class's code: 1 a stage, 2 bad input


_ABOUT = """\
Run the stages of an ML pipeline (prepare-data -> train -> evaluate -> plot) only when
they are stale, record every artifact version in W&B and in dvc_free_lock.yaml, and
reproduce or inspect them later.

start with:  python -m pipeline run            (then: status, runs, lineage NAME)
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line and exit code 2, as for any bad input
        raise UsageError(f"{message} (see `{self.prog} --help`)")

    def format_help(self) -> str:
        if callable(getattr(self, "epilog_from", None)):  # computed only when asked for
            self.epilog = self.epilog_from()  # type: ignore[attr-defined]
        return super().format_help()


def _stage_list() -> str:
    """The stages a target may name, each with what it uses and logs (for `run --help`)."""
    from pipeline.execution.discover import stage_specs

    try:
        specs = stage_specs()
    except PipelineError as exc:
        return f"stages: cannot list them ({exc})"
    width = max(len(s.name) for s in specs)
    lines = ["stages (each stage's keys: python -m stages.<stage> --help):"]
    for spec in specs:
        uses = f"uses {', '.join(spec.uses)}; " if spec.uses else ""
        lines.append(f"  {spec.name:<{width}}  {uses}logs {', '.join(o.name for o in spec.logs)}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m pipeline",
        description=_ABOUT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--workspace",
        type=Path,
        default=None,
        help="folder holding the lock, .pipeline/ and outputs/ (default: the nearest folder "
        "upward holding either, as git finds its repository; else .)",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="bring STAGE up to date, running what is stale",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.epilog_from = _stage_list  # type: ignore[attr-defined]
    _add_run(run)
    status = sub.add_parser("status", help="say which stages are fresh, stale or never ran")
    _stage_args(status, "only this stage and its upstream; overrides show their effect")
    status.add_argument("--json", action="store_true", help="print a JSON document (see README)")
    status.add_argument("-m", "--multirun", action="store_true", help="the members of a sweep")
    sync = sub.add_parser("sync", help="upload offline W&B runs, producers before consumers")
    sync.add_argument("--dry-run", action="store_true", help="print the order, upload nothing")
    sync.add_argument("args", nargs="*", metavar="wandb.entity=E", help="where runs without one go")
    pull = sub.add_parser("pull", help="fetch from W&B the versions the lock pins (up to STAGE)")
    pull.add_argument(
        "args", nargs="*", metavar="[STAGE] [wandb.entity=E wandb.project=P]", help="default: all"
    )
    cli_inspect.add_parsers(sub)
    return parser


def _stage_args(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("args", nargs="*", metavar="[STAGE] [STAGE.KEY=VALUE ...]", help=help_text)


def _add_run(run: argparse.ArgumentParser) -> None:
    _stage_args(run, "target stage (default: the last stages) and sticky config overrides")
    run.add_argument("--force", action="store_true", help="rerun STAGE even if fresh")
    run.add_argument(
        "--only",
        action="store_true",
        help="run just STAGE on the inputs the lock pins; run nothing upstream",
    )
    run.add_argument(
        "--use",
        action="append",
        default=[],
        metavar="NAME:VER",
        help="pin an input artifact to a version or alias, e.g. model:v0",
    )
    run.add_argument(
        "--reset",
        action="append",
        default=[],
        metavar="STAGE",
        help="drop the overrides recorded for STAGE",
    )
    run.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    run.add_argument(
        "--frozen",
        action="store_true",
        help="rerun and fail unless every fingerprint and digest matches the lock",
    )
    run.add_argument("--json", action="store_true", help="print a JSON document (see README)")
    run.add_argument(
        "--pull",
        action="store_true",
        help="before running a stage, pull its outputs from W&B if its fingerprint ran there",
    )
    run.add_argument(
        "-m",
        "--multirun",
        action="store_true",
        help="sweep: one member per combination of comma-separated values (not sticky)",
    )


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `kill`, a cluster's time limit), handled as Ctrl-C is: exit code 143."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def _remove_made(made: Sequence[Path]) -> None:
    """Bad input leaves nothing behind: not even the empty store that opening it created.

    Only while no lock was written: a stage that finished (then the disk filled up) stays.
    """
    for folder in made:
        if not (folder.parent / LOCK_NAME).exists():
            shutil.rmtree(folder, ignore_errors=True)


def find_workspace(start: Path) -> Path:
    """The nearest folder from ``start`` upward holding a lock or a store; else ``start``.

    As git finds its repository and DVC its project: a command typed in a subfolder of a
    workspace (`outputs/`, a notebook folder) means that workspace.
    """
    for folder in [start, *start.parents]:
        if (folder / LOCK_NAME).is_file() or (folder / paths.STORE_DIR).is_dir():
            return folder
    return start


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (143 after SIGTERM, 130 after Ctrl-C)."""
    main_thread = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, not at exit: a closed pipe is then one more case below
        return code
    except BrokenPipeError:  # `lineage ... | head`: the reader had enough; so do we
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process stopped by SIGPIPE
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, before)


def _main(argv: Sequence[str] | None) -> int:
    started = time.time_ns()  # the memo trusts only files not modified since
    argv = list(sys.argv[1:] if argv is None else argv)
    again = f"python -m pipeline {shlex.join(argv)}"
    made: list[Path] = []  # a store this command created, to remove again on bad input
    try:
        parser = _parser()
        args, extra = parser.parse_known_args(argv)
        # `run STAGE -m a.b=1,2 c.d=3`: overrides after a flag are still the run's positionals.
        positional = args.command in ("run", "status", "dag")
        if extra and positional and not any(e.startswith("-") for e in extra):
            args.args += extra
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        workspace = (args.workspace or find_workspace(Path.cwd())).resolve()
        if not workspace.is_dir():
            raise UsageError(f"workspace `{workspace}` is not a folder; create it or pass another")
        if getattr(args, "html", None) is not None:  # a path the user typed means theirs
            args.html = args.html.absolute()
        # Relative paths in configs (a dataset's `root`) mean the workspace, wherever we started.
        os.chdir(workspace)
        if not (workspace / paths.STORE_DIR).exists() and not (workspace / LOCK_NAME).exists():
            made.append(workspace / paths.STORE_DIR)
        args.workspace = workspace
        args.started_ns = started
        if args.command in ("run", "status"):
            known = memo.recall(workspace / paths.STORE_DIR, _command(args))
            if known is not None:
                print(known, end="")
                return EXIT_OK
        commands = {
            "run": _run,
            "status": _status,
            "sync": _sync,
            "pull": _pull,
            **cli_inspect.COMMANDS,
        }
        return commands[args.command](args)
    except StageFailed as exc:
        if (problem := _cannot_write(exc)) is not None:
            print(f"error: {problem}", file=sys.stderr)
            return UsageError.exit_code
        if exc.__cause__ is not None and not isinstance(exc.__cause__, PipelineError):
            _print_stage_traceback(exc.__cause__)
        print(f"error: {exc}; after fixing it, resume with `{again}`", file=sys.stderr)
        return exc.exit_code
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.exit_code == UsageError.exit_code:
            _remove_made(made)
        return exc.exit_code
    except BrokenPipeError:
        raise  # `main` answers it
    except (OSError, sqlite3.Error) as exc:
        if (problem := _cannot_write(exc) or _damaged_index(exc)) is None:
            raise
        print(f"error: {problem}", file=sys.stderr)
        _remove_made(made)
        return UsageError.exit_code
    except KeyboardInterrupt as exc:
        print(
            "interrupted: stages that finished are kept in the store and the lock; "
            f"resume with `{again}`",
            file=sys.stderr,
        )
        return 143 if isinstance(exc, Terminated) else 130


def _written(filename: object) -> str:
    """A file being written, as the user knows it: a stage's output, not our staging path."""
    if not filename:
        return "the workspace"
    path = Path(str(filename))
    parts = path.parts
    if ".pipeline" in parts and "tmp" in parts[parts.index(".pipeline") :]:
        inside = parts[parts.index("tmp", parts.index(".pipeline")) + 2 :]
        if inside:
            return f"the stage output `{Path(*inside).as_posix()}`"
    return f"`{path}`"


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_DENIED = (errno.EROFS, errno.EACCES, errno.EPERM)


def _cannot_write(exc: BaseException) -> str | None:
    """The disk is full or the workspace is read-only: say where, and what to do."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (*_FULL, *_DENIED):
            where = _written(seen.filename)
            if seen.errno in _FULL:
                return (
                    f"no space left to write {where} ({seen.strerror}); free space on that "
                    "disk, or use a workspace on another one (`--workspace DIR`), and rerun "
                    "(stages that finished are kept)"
                )
            return (
                f"cannot write {where} ({seen.strerror}); run in a workspace you can write "
                "to (`--workspace DIR`)"
            )
        if isinstance(seen, sqlite3.OperationalError) and "disk is full" in str(seen):
            return (
                "no space left for the store's index; free space on that disk and rerun "
                "(stages that finished are kept)"
            )
        if isinstance(seen, sqlite3.OperationalError) and (
            "readonly" in str(seen) or "unable to open" in str(seen)
        ):
            return "cannot open the store's index for writing; use a workspace you can write to"
        seen = seen.__cause__ or seen.__context__
    return None


_PLUMBING = ("/hydra/", "/hydra_zen/", "/omegaconf/", "/pipeline/execution/runner.py")


def _damaged_index(exc: BaseException) -> str | None:
    """The store's index is not an SQLite database any more: say so, and how to start anew."""
    text = str(exc)
    if not isinstance(exc, sqlite3.DatabaseError) or not any(
        words in text for words in ("not a database", "malformed", "disk image")
    ):
        return None
    index = paths.index_file(Path(paths.STORE_DIR))
    return (
        f"the store's index `{index}` is damaged ({text}); move it aside (`mv {index} "
        f"{index}.damaged`) and rerun: the stages run again and register their versions anew"
    )


def _print_stage_traceback(exc: BaseException) -> None:
    """The stage's own traceback, without the frames of Hydra and of our runner."""
    report = traceback.TracebackException.from_exception(exc)
    for part in (report, report.__cause__, report.__context__):
        if part is not None:
            kept = [f for f in part.stack if not any(p in f.filename for p in _PLUMBING)]
            part.stack = traceback.StackSummary.from_list(kept)
    print("".join(report.format()), end="", file=sys.stderr)


_WANDB_KEYS = ("project", "entity", "mode")


def _stage_and_overrides(args: list[str]) -> tuple[str | None, list[str], dict[str, str]]:
    """Split ``[STAGE] [STAGE.KEY=VALUE ...] [wandb.KEY=VALUE ...]``."""
    stage = args[0] if args and "=" not in args[0] and "." not in args[0] else None
    rest = args[1:] if stage else args
    tracking = {}
    for arg in [a for a in rest if a.startswith(("hydra/", "hydra.")) and not _is_launcher(a)]:
        raise UsageError(
            f"`{arg}`: of Hydra's own settings only the launcher can be chosen here "
            "(`hydra/launcher=joblib`, `hydra.launcher.n_jobs=2`)"
        )
    for arg in [a for a in rest if a.startswith("wandb.")]:
        key, _, value = arg.removeprefix("wandb.").partition("=")
        if key not in _WANDB_KEYS or not value:
            raise UsageError(
                f"`{arg}`: W&B options are {', '.join(f'wandb.{k}=VALUE' for k in _WANDB_KEYS)}"
            )
        if key == "mode" and value not in ("online", "offline", "disabled"):
            raise UsageError(f"`{arg}`: the mode is one of online, offline, disabled")
        if bad := sorted(set(value) & set("/\\#?%:")):
            raise UsageError(f"`{arg}`: W&B names cannot contain {' '.join(bad)}")
        tracking[key] = value
    plain = [a for a in rest if not a.startswith("wandb.") and not _is_launcher(a)]
    return stage, plain, tracking


def _is_launcher(arg: str) -> bool:
    return arg.startswith(("hydra/launcher=", "hydra.launcher."))


def _gc_waiting() -> None:
    print("waiting for `gc` in this workspace to finish", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    from pipeline.state.collect import in_use

    if not os.access(args.workspace, os.W_OK):  # checked first, so that nothing is half-done
        raise UsageError(
            f"workspace `{args.workspace}` is not writable; make it writable or run in "
            "another folder (`--workspace DIR`)"
        )
    with in_use(args.workspace, _gc_waiting):  # gc removes nothing this run plans with
        return _run_held(args)


def _run_held(args: argparse.Namespace) -> int:
    stage, overrides_argv, tracking = _stage_and_overrides(args.args)
    if args.frozen and (overrides_argv or args.reset or args.use or args.only or args.pull):
        raise UsageError(
            "`--frozen` reproduces the lock as it is, running every stage: drop the overrides, "
            "--reset, --use, --only and --pull"
        )
    if not args.dry_run:  # what a killed `run`'s jobs finished is reused, not run again
        from pipeline.state.booking import adopt

        adopt(args.workspace)
    project, steps, options = _planned(args, stage, overrides_argv, tracking, declarations=True)
    if args.dry_run:
        if any(s.action == "run" for s in steps):  # checked as `run` checks: the full specs
            if project.declared_only:
                project, steps, options = _planned(args, stage, overrides_argv, tracking, False)
            project.check(steps)
        _answer(args, project, steps, cli_text.steps(steps, args.json, planned=True))
        return EXIT_OK
    if all(s.state == "fresh" for s in steps):  # nothing to run or record: say so at once
        _answer(args, project, steps, cli_text.steps(steps, args.json, planned=False))
        return EXIT_OK
    if project.declared_only:  # something runs: that needs the stages themselves
        project, steps, options = _planned(args, stage, overrides_argv, tracking, False)
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
) -> tuple[Any, list[Any], Any]:
    """Open the project and plan this `run`: the project, its steps and the options."""
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
    project.wandb.update(tracking)
    project.launcher = [a for a in args.args if _is_launcher(a)]
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


def _status(args: argparse.Namespace) -> int:
    from pipeline.core import graph
    from pipeline.execution.project import open_project

    stage, overrides, _ = _stage_and_overrides(args.args)
    project, _ = open_project(
        args.workspace, overrides, multirun=args.multirun, since_ns=args.started_ns
    )
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
        watched = project.watched(steps)
        memo.remember(project.store.root, _command(args), text, watched, args.started_ns)


def _command(args: argparse.Namespace) -> list[str]:
    """The command as the memo knows it: every option but the workspace."""
    options = {k: v for k, v in vars(args).items() if k not in ("workspace", "started_ns")}
    return [json.dumps(options, default=str)]


def _team_cache(project: Any) -> Any:
    from pipeline.execution import remote
    from pipeline.execution.pull import TeamCache

    _need_credentials("python -m pipeline run --pull")
    entity, name = project.wandb.get("entity"), project.wandb.get("project")
    return TeamCache(
        lambda: remote.where(entity, name), lambda text: print(text, file=sys.stderr, flush=True)
    )


def _need_credentials(again: str) -> None:
    from pipeline.execution.callback import credentials_configured

    if not credentials_configured():
        raise UsageError(
            f"no W&B credentials: run `wandb login` or set WANDB_API_KEY, then rerun `{again}`"
        )


def _wandb_only(args: list[str], command: str) -> tuple[str | None, dict[str, str]]:
    """``[STAGE] [wandb.KEY=VALUE ...]``: a command that takes W&B options but no overrides."""
    stage, overrides, tracking = _stage_and_overrides(args)
    if overrides or "mode" in tracking:
        bad = overrides[0] if overrides else "wandb.mode"
        raise UsageError(
            f"`{command}` takes a stage and `wandb.entity=` / `wandb.project=`, not `{bad}`"
        )
    return stage, tracking


def _sync(args: argparse.Namespace) -> int:
    from pipeline.execution import remote, sync
    from pipeline.state.store import Store

    stage, tracking = _wandb_only(args.args, "sync")
    if stage is not None or "project" in tracking:
        raise UsageError(
            "`sync` uploads every offline run to the project it was recorded in; it takes "
            "only `wandb.entity=E` (for runs recorded without an entity)"
        )
    if not (args.workspace / paths.STORE_DIR).is_dir():
        raise UsageError(f"`{args.workspace}` has no `{paths.STORE_DIR}`: nothing ran here yet")
    store = Store(args.workspace)
    todo = sync.pending(store)
    if not todo:
        print("nothing to sync: every W&B run is uploaded")
        return EXIT_OK
    if not args.dry_run:
        _need_credentials("python -m pipeline sync")
    for number, run in enumerate(todo, 1):
        print(f"{number}. {run.stage}: W&B run {run.wandb_id} ({run.folder})")
    if args.dry_run:
        print(f"dry run: {len(todo)} offline runs would be uploaded in this order")
        return EXIT_OK
    entity = tracking.get("entity")
    try:  # W&B answers, and takes the key, before anything is sent
        remote.default_entity()
    except RemoteError as exc:
        raise RemoteError(
            f"{exc}; nothing was uploaded: rerun `python -m pipeline sync` once W&B answers"
        ) from exc
    sync.sync(store, todo, lambda: remote.where(entity).entity)
    print(f"synced {len(todo)} runs")
    return EXIT_OK


def _pull(args: argparse.Namespace) -> int:
    from pipeline.core import graph, lock
    from pipeline.core.sweep import stage_of
    from pipeline.execution import remote
    from pipeline.execution.discover import stage_specs
    from pipeline.execution.pull import Pulled, pull_locked
    from pipeline.state.store import Store

    stage, tracking = _wandb_only(args.args, "pull")
    specs = stage_specs()
    dag = graph.build(graph.Node(s.name, s.uses, tuple(o.name for o in s.logs)) for s in specs)
    targets = [graph.check_stage(dag, stage)] if stage else graph.sinks(dag)
    scope = set(graph.order(dag, targets))
    pinned = lock.read(args.workspace / paths.LOCK_NAME)
    keys = [key for key in pinned.stages if stage_of(key) in scope]
    if not keys:
        print(f"nothing to pull: `{paths.LOCK_NAME}` pins no stage up to `{stage or 'the end'}`")
        return EXIT_OK
    _need_credentials("python -m pipeline pull")
    place = remote.where(tracking.get("entity"), tracking.get("project"))

    def report(item: Pulled) -> None:
        pin = item.pin
        what = f"pulled from {place.entity}/{place.project}" if item.fetched else "already here"
        print(f"{item.key}: {pin.name} {pin.version} ({pin.size:,} bytes) {what}", flush=True)

    from pipeline.state.collect import in_use

    with in_use(args.workspace, _gc_waiting):
        done = pull_locked(Store(args.workspace), pinned, keys, place, report)
    fetched = sum(item.fetched for item in done)
    print(f"pulled {fetched} of {len(done)} versions the lock pins; the rest were here")
    return EXIT_OK
