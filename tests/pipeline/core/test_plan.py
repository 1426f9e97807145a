"""The plan on small graphs: actions, reasons and order, with an in-memory index."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from pipeline.core import digest, graph
from pipeline.core.errors import StoreError, UsageError
from pipeline.core.lock import CachedRun, InputPin, Lock, OutputPin, StageLock
from pipeline.core.plan import Options, StageState, Step, plan

G = graph.from_mapping(
    {
        "prepare_data": ((), ("dataset",)),
        "train": (("dataset",), ("model",)),
        "evaluate": (("model", "dataset"), ("evaluation",)),
    }
)
ARTIFACTS = {"prepare_data": "dataset-digits", "train": "model", "evaluate": "evaluation"}
LOGS = {"prepare_data": "dataset", "train": "model", "evaluate": "evaluation"}


@dataclass
class FakeIndex:
    runs: dict[str, CachedRun] = field(default_factory=dict)
    missing: set[tuple[str, str]] = field(default_factory=set)
    versions: dict[tuple[str, str], InputPin] = field(default_factory=dict)

    def cached(self, fingerprint: str) -> CachedRun | None:
        return self.runs.get(fingerprint)

    def damage(self, pin: OutputPin) -> str | None:
        return "missing" if (pin.name, pin.version) in self.missing else None

    def resolve(self, name: str, ref: str) -> InputPin | None:
        return self.versions.get((name, ref))


def state(stage: str, **config: Any) -> StageState:
    return StageState(
        config={"seed": 0, **config},
        overrides=(),
        code={f"stages/{stage}.py": "md5"},
        artifacts={LOGS[stage]: ARTIFACTS[stage]},
    )


STATES = {name: state(name) for name in ARTIFACTS}


def ran(states: Mapping[str, StageState], version: int = 0) -> Lock:
    """The lock after every stage ran once with these states."""
    out: dict[str, StageLock] = {}
    known: dict[str, InputPin] = {}
    for name in graph.order(G):
        s = states[name]
        inputs = {a: known[a] for a in G.nodes[name]["uses"]}
        fp = digest.fingerprint(
            name, s.code_digest, s.config, {a: p.digest for a, p in inputs.items()}
        )
        art = LOGS[name]
        pin = OutputPin(ARTIFACTS[name], art, f"v{version}", f"{fp[:8]}{art}", 10, 1)
        out[name] = StageLock(fp, s.code_digest, s.code, s.config, (), inputs, {art: pin}, {})
        known[art] = InputPin(pin.name, pin.version, pin.digest)
    return Lock(out)


def actions(steps: list[Step]) -> list[tuple[str, str]]:
    return [(s.stage, s.action) for s in steps]


def test_nothing_ran_runs_everything_in_order() -> None:
    steps = plan(G, ["evaluate"], STATES, Lock(), FakeIndex())
    assert actions(steps) == [("prepare_data", "run"), ("train", "run"), ("evaluate", "run")]
    assert all(s.state == "never-ran" and s.reasons == ("never ran",) for s in steps)


def test_everything_fresh_reuses_everything() -> None:
    steps = plan(G, ["evaluate"], STATES, ran(STATES), FakeIndex())
    assert actions(steps) == [("prepare_data", "reuse"), ("train", "reuse"), ("evaluate", "reuse")]
    assert all(s.state == "fresh" and s.reasons == () for s in steps)


def test_a_config_change_reruns_the_stage_and_says_what_changed() -> None:
    states = {**STATES, "train": state("train", lr=0.01)}
    old = {**STATES, "train": state("train", lr=0.001)}
    steps = plan(G, ["evaluate"], states, ran(old), FakeIndex())
    assert actions(steps) == [("prepare_data", "reuse"), ("train", "run"), ("evaluate", "run")]
    assert steps[1].reasons == ("config changed: train.lr 0.001 -> 0.01",)
    assert steps[2].reasons == ("input model is rebuilt by `train` first",)
    # train runs whatever; evaluate is decided again once the new model exists.
    assert [s.decided_later for s in steps] == [False, False, True]


def test_nested_and_new_keys_are_named() -> None:
    old = {**STATES, "train": state("train", model={"width": 8})}
    new = {**STATES, "train": state("train", model={"width": 16}, lr=0.1)}
    steps = plan(G, ["train"], new, ran(old), FakeIndex())
    assert steps[1].reasons == (
        "config changed: train.lr (unset) -> 0.1",
        "config changed: train.model.width 8 -> 16",
    )


def test_a_code_change_names_the_file() -> None:
    edited = replace(STATES["train"], code={"stages/train.py": "new"})
    steps = plan(G, ["evaluate"], {**STATES, "train": edited}, ran(STATES), FakeIndex())
    assert steps[1].reasons == ("code changed: stages/train.py",)
    assert steps[1].state == "stale"


def test_an_upstream_output_that_changed_makes_downstream_stale() -> None:
    lock = ran(STATES)
    newer = replace(lock.stages["train"].outputs["model"], version="v1", digest="other")
    lock = lock.with_stage("train", replace(lock.stages["train"], outputs={"model": newer}))
    steps = plan(G, ["evaluate"], STATES, lock, FakeIndex())
    assert actions(steps)[2] == ("evaluate", "run")
    assert steps[2].reasons == ("input model changed: v0 -> v1",)


def test_a_missing_output_reruns_its_stage() -> None:
    steps = plan(G, ["train"], STATES, ran(STATES), FakeIndex(missing={("model", "v0")}))
    assert actions(steps) == [("prepare_data", "reuse"), ("train", "run")]
    assert steps[1].reasons == ("output model v0 is not intact (missing)",)


def test_force_reruns_a_fresh_stage() -> None:
    steps = plan(G, ["train"], STATES, ran(STATES), FakeIndex(), Options(force={"train"}))
    assert actions(steps) == [("prepare_data", "reuse"), ("train", "run")]
    assert steps[1].reasons == ("forced",)


def test_a_forced_or_changed_stage_downstream_of_a_rerun_runs_for_sure() -> None:
    states = {**STATES, "train": state("train", lr=0.01)}
    old = {**STATES, "train": state("train", lr=0.001)}
    forced = plan(G, ["evaluate"], states, ran(old), FakeIndex(), Options(force={"evaluate"}))
    assert forced[2].reasons == ("input model is rebuilt by `train` first", "forced")
    assert not forced[2].decided_later
    edited = {**states, "evaluate": state("evaluate", batch_size=64)}
    changed = plan(G, ["evaluate"], edited, ran(old), FakeIndex())
    assert "config changed: evaluate.batch_size (unset) -> 64" in changed[2].reasons
    assert not changed[2].decided_later


def test_a_config_that_ran_before_is_restored_from_the_run_cache() -> None:
    old = {**STATES, "train": state("train", lr=0.001)}
    now = {**STATES, "train": state("train", lr=0.01)}
    first = ran(old)
    cached = CachedRun(dict(first.stages["train"].outputs), {"acc": 1.0})
    index = FakeIndex(runs={first.stages["train"].fingerprint: cached})
    steps = plan(G, ["evaluate"], old, ran(now, version=1), index)
    assert actions(steps) == [("prepare_data", "reuse"), ("train", "reuse"), ("evaluate", "run")]
    assert steps[1].reasons[0] == "config changed: train.lr 0.01 -> 0.001"
    assert steps[1].outputs == first.stages["train"].outputs
    assert steps[2].reasons == ("input model changed: v1 -> v0",)


def test_only_pins_upstream_from_the_lock() -> None:
    steps = plan(G, ["evaluate"], STATES, ran(STATES), FakeIndex(), Options(only=True))
    assert actions(steps) == [("prepare_data", "pin"), ("train", "pin"), ("evaluate", "reuse")]


def test_only_without_upstream_in_the_lock_is_bad_input() -> None:
    with pytest.raises(UsageError, match=r"`--only` needs the outputs of `prepare_data`"):
        plan(G, ["evaluate"], STATES, Lock(), FakeIndex(), Options(only=True))


def test_use_pins_an_input_version() -> None:
    lock = ran(STATES)
    old = InputPin("model", "v0", "olddigest")
    steps = plan(
        G,
        ["evaluate"],
        STATES,
        lock,
        FakeIndex(versions={("model", "v0"): old}),
        Options(use={"model": "v0"}),
    )
    assert actions(steps) == [("prepare_data", "reuse"), ("train", "pin"), ("evaluate", "run")]
    assert steps[2].inputs["model"] == old


def test_use_of_an_unknown_version_is_bad_input() -> None:
    with pytest.raises(UsageError, match=r"no version `v7` of `model`"):
        plan(G, ["evaluate"], STATES, ran(STATES), FakeIndex(), Options(use={"model": "v7"}))


def test_only_stops_when_a_pinned_input_is_damaged() -> None:
    index = FakeIndex(missing={("model", "v0")})
    with pytest.raises(
        StoreError,
        match=r"`--only` uses `model` v0, which is not intact in the "
        r"store \(missing\); rebuild it with `python -m pipeline run --force train`",
    ):
        plan(G, ["evaluate"], STATES, ran(STATES), index, Options(only=True))


def test_use_stops_when_the_pinned_version_is_damaged() -> None:
    index = FakeIndex(
        versions={("model", "v0"): InputPin("model", "v0", "d")}, missing={("model", "v0")}
    )
    with pytest.raises(StoreError, match=r"`--use model:v0` pins `model` v0, which is not intact"):
        plan(G, ["evaluate"], STATES, ran(STATES), index, Options(use={"model": "v0"}))


def test_plan_is_deterministic() -> None:
    first = plan(G, ["evaluate"], STATES, Lock(), FakeIndex())
    assert first == plan(G, ["evaluate"], STATES, Lock(), FakeIndex())
