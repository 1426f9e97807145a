"""The command line's entry: parses, finds the workspace, dispatches, and answers faults."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.cli import arguments, show
from pipeline.core import paths
from pipeline.core.errors import PipelineError, StageFailed, UsageError
from pipeline.core.paths import LOCK_NAME
from pipeline.state import memo

EXIT_OK = arguments.EXIT_OK


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
    show.add_parsers(sub)
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
            known = memo.recall(workspace / paths.STORE_DIR, memo.command_key(vars(args)))
            if known is not None:
                print(known, end="")
                return EXIT_OK
        # Imported only now: a repeated no-op answered above needs neither.
        from pipeline.cli import run, team

        commands = {**run.COMMANDS, **team.COMMANDS, **show.COMMANDS}
        return commands[args.command](args)
    except StageFailed as exc:
        from pipeline.cli import faults  # what a fault is, worded: only when there is one

        if (problem := faults.cannot_write(exc)) is not None:
            print(f"error: {problem}", file=sys.stderr)
            return UsageError.exit_code
        if exc.__cause__ is not None and not isinstance(exc.__cause__, PipelineError):
            faults.print_stage_traceback(exc.__cause__)
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
        from pipeline.cli import faults

        if (problem := faults.cannot_write(exc) or faults.damaged_index(exc)) is None:
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
