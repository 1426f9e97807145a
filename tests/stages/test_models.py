"""Tests for the model factories and the `model` artifact record."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

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
