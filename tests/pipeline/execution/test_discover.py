"""Stage discovery: the package `$PIPELINE_STAGES` names, checked."""

from __future__ import annotations

import pytest

from pipeline.core.errors import UsageError
from pipeline.execution import discover


def test_stages_come_from_the_package_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert [s.name for s in discover.stage_specs()][:2] == ["prepare_data", "train"]
    monkeypatch.setenv(discover.STAGES_ENV, "no_such_package_here")
    with pytest.raises(UsageError, match=r"`PIPELINE_STAGES=no_such_package_here`: no such"):
        discover.stage_specs()
    monkeypatch.setenv(discover.STAGES_ENV, "json")
    with pytest.raises(UsageError, match=r"package `json` defines no STAGES"):
        discover.stage_specs()
