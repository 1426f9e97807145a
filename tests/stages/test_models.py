"""Tests for the model factories and the `model` artifact record."""

from __future__ import annotations

import contextlib
import functools
import json
import pickle
from pathlib import Path

import pytest
import torch

from pipeline.spec import StageInputError
from stages import models

SHAPES = [(1, 8, 8), (1, 40), (3, 32, 32)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize(
    "factory",
    [models.mlp, models.cnn, functools.partial(models.torchvision_model, name="squeezenet1_0")],
    ids=["mlp", "cnn", "torchvision"],
)
def test_factories_fit_every_input_shape(factory, shape: tuple[int, ...]) -> None:
    net = factory(shape, 7).eval()
    with torch.no_grad():
        assert net(torch.zeros(2, *shape)).shape == (2, 7)


def test_cnn_uses_conv1d_for_signals() -> None:
    kinds = {type(m).__name__ for m in models.cnn((1, 40), 10)}
    assert "Conv1d" in kinds and "Conv2d" not in kinds


def test_resnet18_on_tiny_grey_images() -> None:
    net = models.torchvision_model((1, 8, 8), 10, name="resnet18")
    net.train()
    loss = net(torch.rand(4, 1, 8, 8)).logsumexp(1).mean()
    loss.backward()  # the channel adapter and the body both get gradients
    assert net[1].weight.grad is not None and net[-1].fc.weight.grad is not None


def test_describe_records_factory_and_all_kwargs() -> None:
    record = models.describe(functools.partial(models.cnn, channels=(8,)), (1, 8, 8), 10)
    assert record == {
        "factory": "stages.models.cnn",
        "in_shape": [1, 8, 8],
        "kwargs": {"channels": [8], "dropout": 0.1, "kernel_size": 3},
        "num_classes": 10,
    }


def test_save_then_load_rebuilds_the_same_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = models.mlp((1, 8, 8), 10, hidden=16).eval()
    models.save(
        tmp_path, net, models.describe(functools.partial(models.mlp, hidden=16), (1, 8, 8), 10)
    )
    again = models.load(tmp_path)
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x))


def test_resolve_device_rejects_unknown_names() -> None:
    assert models.resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="`device` must be `auto`, `cpu` or `cuda`; got `tpu`"):
        models.resolve_device("tpu")


class _Payload:
    """Unpickling this would create the marker file: what a poisoned checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def test_a_pickled_payload_in_a_model_artifact_never_runs(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    net = models.mlp((1, 8, 8), 10)
    models.save(folder, net, models.describe(models.mlp, (1, 8, 8), 10))
    marker = tmp_path / "pwned"
    torch.save({"weights": _Payload(marker)}, folder / models.STATE_FILE)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        models.load(folder)
    assert not marker.exists()


def test_a_model_record_naming_another_callable_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    models.save(folder, models.mlp((1, 8, 8), 10), models.describe(models.mlp, (1, 8, 8), 10))
    record = json.loads((folder / models.MODEL_FILE).read_text())
    (folder / models.MODEL_FILE).write_text(json.dumps({**record, "factory": "os.system"}))
    with pytest.raises(StageInputError, match=r"names factory `os.system`; a model artifact"):
        models.load(folder)


def test_unknown_torchvision_names_are_refused_with_a_suggestion() -> None:
    with pytest.raises(StageInputError, match=r"`resnet19` is not a torchvision classifier; did"):
        models.check_torchvision_name("resnet19")
    models.check_torchvision_name("resnet18")


def test_portable_kernels_switch_off_onednn_and_nnpack_and_put_everything_back() -> None:
    saved = torch.get_num_threads(), torch.backends.mkldnn.enabled, _nnpack()
    precision = torch.backends.mkldnn.allow_tf32
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="inside"):
            _fail_inside(models.portable_kernels(1))
        assert torch.get_num_threads() == 2
        assert torch.backends.mkldnn.enabled == saved[1] and _nnpack() == saved[2]
        assert torch.backends.mkldnn.allow_tf32 == precision
    finally:
        torch.set_num_threads(saved[0])


def _fail_inside(block: contextlib.AbstractContextManager[None]) -> None:
    with block:
        assert torch.get_num_threads() == 1
        assert not torch.backends.mkldnn.enabled and not _nnpack()
        raise RuntimeError("inside")


def _nnpack() -> bool:
    return bool(torch._C._get_nnpack_enabled())
