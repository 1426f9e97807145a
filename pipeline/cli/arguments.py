"""The words commands share: a stage, its overrides, W&B's options, Hydra's launcher."""

from __future__ import annotations

import sys

from pipeline.core.errors import UsageError

EXIT_OK = 0  # failures exit with their error class's code: 1 a stage, 2 bad input
_WANDB_KEYS = ("project", "entity", "mode")


def stage_and_overrides(args: list[str]) -> tuple[str | None, list[str], dict[str, str]]:
    """Split ``[STAGE] [STAGE.KEY=VALUE ...] [wandb.KEY=VALUE ...]``."""
    stage = args[0] if args and "=" not in args[0] and "." not in args[0] else None
    rest = args[1:] if stage else args
    tracking = {}
    for arg in [a for a in rest if a.startswith(("hydra/", "hydra.")) and not is_launcher(a)]:
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
    plain = [a for a in rest if not a.startswith("wandb.") and not is_launcher(a)]
    return stage, plain, tracking


def is_launcher(arg: str) -> bool:
    """Whether ``arg`` chooses or sets Hydra's launcher (the one Hydra setting allowed)."""
    return arg.startswith(("hydra/launcher=", "hydra.launcher."))


def gc_waiting() -> None:
    """Say that this command waits for a `gc` of the workspace."""
    print("waiting for `gc` in this workspace to finish", file=sys.stderr, flush=True)


def need_credentials(again: str) -> None:
    """Refuse, naming the fix and the command to rerun, when no W&B key is configured."""
    from pipeline.execution.remote import credentials_configured

    if not credentials_configured():
        raise UsageError(
            f"no W&B credentials: run `wandb login` or set WANDB_API_KEY, then rerun `{again}`"
        )


def wandb_only(args: list[str], command: str) -> tuple[str | None, dict[str, str]]:
    """``[STAGE] [wandb.KEY=VALUE ...]``: a command that takes W&B options but no overrides."""
    stage, overrides, tracking = stage_and_overrides(args)
    if overrides or "mode" in tracking:
        bad = overrides[0] if overrides else "wandb.mode"
        raise UsageError(
            f"`{command}` takes a stage and `wandb.entity=` / `wandb.project=`, not `{bad}`"
        )
    return stage, tracking
