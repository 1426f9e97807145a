"""The stage contract's process settings: torch's CPU code paths are pinned, not guessed."""

from __future__ import annotations

import os

import pytest

from pipeline import spec


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in spec.CPU_PATHS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(spec.platform, "machine", lambda: "x86_64")
    return monkeypatch


def test_the_cpu_code_paths_are_pinned_to_avx2_on_x86_64(clean_env: pytest.MonkeyPatch) -> None:
    shown = spec.pin_cpu_numerics()
    assert {name: os.environ[name] for name in spec.CPU_PATHS} == {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_CBWR": "COMPATIBLE",
    }
    assert shown == "x86_64 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=COMPATIBLE"


def test_a_path_the_user_chose_is_kept_and_recorded(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ATEN_CPU_CAPABILITY", "avx512")
    assert "ATEN_CPU_CAPABILITY=avx512 " in spec.pin_cpu_numerics()
    assert os.environ["ATEN_CPU_CAPABILITY"] == "avx512"


def test_other_machines_are_left_alone(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setattr(spec.platform, "machine", lambda: "aarch64")
    assert spec.pin_cpu_numerics() == "aarch64"
    assert not set(spec.CPU_PATHS) & set(os.environ)
