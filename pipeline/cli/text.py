"""What `run` and `status` print: steps and states, as text for people or JSON for tools."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.core.sweep import stage_of
from pipeline.spec import row_text


def versions(step: Any) -> str:
    """The artifact versions a step made or found: ``dataset-digits v0, model v1``."""
    return ", ".join(f"{p.name} {p.version}" for p in step.outputs.values())


def line(step: Any) -> str:
    """One step as `run` reports it: ``train: fresh -> model v0``."""
    made = versions(step)
    why = f" ({'; '.join(step.reasons)})" if step.reasons else ""
    verb = {"reuse": "fresh" if not step.reasons else "reuse", "pin": "pinned", "run": "run"}
    return f"{step.stage}: {verb[step.action]}{why}" + (f" -> {made}" if made else "")


def _step_json(step: Any) -> dict[str, Any]:
    return {
        "stage": step.stage,
        "action": step.action,
        "reasons": list(step.reasons),
        "outputs": {
            k: {"name": p.name, "version": p.version, "digest": p.digest}
            for k, p in sorted(step.outputs.items())
        },
    }


def steps(found: Sequence[Any], as_json: bool, planned: bool) -> str:
    """The steps of a plan (``planned``) or of a run that ran nothing."""
    if as_json:
        return (
            json.dumps({"steps": [_step_json(s) for s in found]}, indent=2, sort_keys=True) + "\n"
        )
    lines = [line(step) for step in found]
    if planned:
        later = sum(s.decided_later for s in found)
        would = sum(s.action == "run" for s in found) - later
        also = f"; {later} more if what they use comes out changed" if later else ""
        lines.append(f"dry run: {would} of {counted(found)} would run{also}")
    elif all(s.action != "run" for s in found):
        lines.append(all_fresh(found))
    return "".join(f"{text}\n" for text in lines)


def counted(found: Sequence[Any]) -> str:
    """``4 stages``, or for a sweep ``10 members of 4 stages``."""
    stages = len({stage_of(s.stage) for s in found})
    if stages == len(found):
        return f"{stages} stage{'s' * (stages != 1)}"
    return f"{len(found)} members of {stages} stage{'s' * (stages != 1)}"


def all_fresh(found: Sequence[Any]) -> str:
    """The line that ends a run with nothing to run."""
    if len(found) == 1:
        return f"{found[0].stage} is fresh; nothing to run"
    return f"all {counted(found)} are fresh; nothing to run"


#: The files a researcher opens after a run: figures and tables.
_SHOWN = (".png", ".svg", ".pdf", ".csv", ".json")
#: Members listed after a run; a sweep's others are counted.
_MOST = 12


def results(done: Sequence[Any], folder: Callable[[Any], Path]) -> str:
    """What `run` ends with: the metrics of each stage it ran, and where its figures are.

    ``folder`` gives an output pin's version folder in the store.
    """
    ran = [s for s in done if s.action == "run"]
    if not ran:
        return ""
    lines = ["results:"]
    width = max(len(s.stage) for s in ran[:_MOST])
    for step in ran[:_MOST]:
        shown = row_text(dict(sorted(step.metrics.items())))
        lines.append(f"  {step.stage:{width}}  {shown or '(no metrics)'}")
    if len(ran) > _MOST:
        lines.append(f"  ... and {len(ran) - _MOST} more (`python -m pipeline run --json` has all)")
    for step in ran:
        for pin in step.outputs.values():
            path = folder(pin)
            files = sorted(str(f.relative_to(path)) for f in path.rglob("*") if f.suffix in _SHOWN)
            if any(not f.endswith(".json") for f in files):  # figures, not only records
                shown = ", ".join(files[:8]) + (", ..." if len(files) > 8 else "")
                lines.append(f"{pin.name} {pin.version}: {_relative(path)}/ ({shown})")
    return "".join(f"{text}\n" for text in lines)


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def status(found: Sequence[Any], runs: Mapping[str, Any], as_json: bool) -> str:
    """Each stage's state, reasons and W&B run, as `status` prints it."""
    if as_json:
        doc = {
            "stages": {
                s.stage: {"state": s.state, "reasons": list(s.reasons), "wandb": runs[s.stage]}
                for s in found
            }
        }
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"
    width = max(len(s.stage) for s in found)
    lines = []
    for step in found:
        reasons = "".join(f"\n{'':{width + 2}}- {r}" for r in step.reasons)
        made = versions(step)
        shown = f"  ({made})" if made and step.state == "fresh" else ""
        run = runs[step.stage]
        if run and step.state == "fresh":
            synced = "synced" if run.get("synced") or run["mode"] == "online" else "not synced"
            shown += f"  W&B {run['mode']} run {run['id']} ({synced})"
        lines.append(f"{step.stage:{width}}  {step.state}{shown}{reasons}\n")
    return "".join(lines)


class Progress:
    """Prints each stage as it starts and ends (nothing under --json: stdout is the document)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.started: dict[str, float] = {}

    def __call__(self, event: str, step: Any) -> None:
        if event == "wait":  # on stderr even under --json: the user must see why it pauses
            print(
                f"{step.stage}: waiting for another process in this workspace that runs it",
                file=sys.stderr,
                flush=True,
            )
            return
        if event == "note":  # a job's note, from a log on a cluster: as the stage logs it
            print(step.reasons[0], file=sys.stderr, flush=True)
            return
        if self.quiet:
            return
        if event == "start":
            self.started[step.stage] = time.perf_counter()
            print(f"{step.stage}: run ({'; '.join(step.reasons)})", flush=True)
        elif step.action == "run":
            secs = time.perf_counter() - self.started[step.stage]
            print(f"{step.stage}: done in {secs:.1f} s -> {versions(step)}", flush=True)
        else:
            print(line(step), flush=True)
