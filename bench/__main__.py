"""Run the benchmarks: `python -m bench [--repeat N] [--only NAME] [--smoke] [--json FILE]`."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

from bench import cases, changes, harness
from bench.harness import Result, Settings
from bench.sweep import sweep, sweep_in_lock

BENCHMARKS: dict[str, Callable[[Settings], Result | list[Result]]] = {
    "noop_run": cases.noop_run,
    "noop_status": cases.noop_status,
    "first_commit_blob": partial(cases.first_commit, stage="big_file"),
    "first_commit_shards": partial(cases.first_commit, stage="many_files"),
    "full_pipeline": cases.full_pipeline,
    "sweep_2000": sweep,
    "after_changes": changes.after_changes,
    "sweep_in_lock": sweep_in_lock,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="rounds of the quick ones (5)")
    parser.add_argument("--heavy-repeat", type=int, default=3, help="rounds of 3 and 4 (3)")
    parser.add_argument(
        "--only", action="append", choices=sorted(BENCHMARKS), help="run just these (repeatable)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round, no DVC venv")
    parser.add_argument("--no-dvc", action="store_true", help="time our side only")
    parser.add_argument("--no-scm", action="store_true", help="DVC without git (`--no-scm`)")
    parser.add_argument("--json", type=Path, default=Path("bench/results.json"), help="raw timings")
    parser.add_argument(
        "--profiles", type=Path, default=None, help="cProfile each missed target into this folder"
    )
    return parser


def _machine(dvc_version: str | None) -> dict[str, str]:
    def out(cmd: Sequence[str]) -> str:
        done = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
        return done.stdout.strip()

    probe = "import torch, wandb; print(torch.__version__, wandb.__version__)"
    torch_version, wandb_version = out([harness.PYTHON, "-c", probe]).split()
    cpu = [line for line in out(["lscpu"]).splitlines() if line.startswith("Model name")]
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu[0].split(":", 1)[1].strip() if cpu else platform.processor(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "torch": torch_version,
        "wandb": wandb_version,
        "dvc": dvc_version or "not run",
        "code": out(["git", "-C", str(harness.REPO), "describe", "--always", "--dirty"]),
        "load before": out(["uptime"]),
    }


def _cell(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.3f} s" if values else "-"


def table(results: Sequence[Result]) -> str:
    """The markdown table: benchmark, medians, ratio, target, met."""
    rows = [
        "| benchmark | ours median | DVC median | ratio | target | met? |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[r.met]
        ours = _cell(r.ours)
        if "seconds" in r.extra:  # benchmark 5: no DVC side, absolute seconds
            ours = ", ".join(f"{k} {_cell(v)}" for k, v in r.extra["seconds"].items())
        rows.append(f"| {r.title} | {ours} | {_cell(r.dvc)} | {ratio} | {r.target} | {met} |")
        if "floor" in r.extra and r.dvc:
            floor = statistics.median(r.extra["floor"]) / statistics.median(r.dvc)
            cells = f"{_cell(r.extra['floor'])} | | {floor:.2f}"
            label = "... its floor: the DVC stage commands in one interpreter"
            rows.append(f"| {label} | {cells} | | |")
        if "writer_alone" in r.extra:
            rows.append(f"| ... the writer alone | {_cell(r.extra['writer_alone'])} | | | | |")
        if "yaml" in r.extra.get("lock", {}):
            yaml_read = _cell([r.extra["lock"]["yaml"]])
            rows.append(f"| ... its lock parsed as YAML, no cache | {yaml_read} | | | | |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmarks, print the table, write the raw timings."""
    args = _parser().parse_args(argv)
    settings = Settings(repeat=args.repeat, heavy_repeat=args.heavy_repeat, smoke=args.smoke)
    if args.smoke:
        settings = replace(settings, repeat=1, heavy_repeat=1, dvc=harness.dvc_available())
    if args.no_scm:
        settings = replace(settings, scm=False)
    if args.no_dvc:
        settings = replace(settings, dvc=False)
    if args.profiles:
        settings = replace(settings, profiles=args.profiles.resolve())
    dvc_version = harness.ensure_dvc(settings.log) if settings.dvc else None
    machine = _machine(dvc_version)
    results = []
    for name in args.only or list(BENCHMARKS):
        settings.log(f"running {name} ...")
        found = BENCHMARKS[name](settings)
        found = found if isinstance(found, list) else [found]
        results += found
        settings.log("\n".join(table(found).splitlines()[2:]))
    done = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
    machine["load after"] = done.stdout.strip()
    print("\n".join(f"- {k}: {v}" for k, v in machine.items()) + "\n")
    print(table(results))
    machine["dvc workspace"] = "git repository" if settings.scm else "dvc init --no-scm"
    doc = {"machine": machine, "smoke": args.smoke, "results": [asdict(r) for r in results]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
