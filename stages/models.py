"""Model factories (plain functions returning ``nn.Sequential``) and the `model` artifact format."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.spec import StageInputError
from stages.data import write_json
from stages.values import Count, Fraction, Size

if TYPE_CHECKING:
    import torch
    from torch import nn

STATE_FILE = "state_dict.pt"
MODEL_FILE = "model.json"
#: Parameters every factory takes that ``train`` fills from the dataset, never from config.
DATA_PARAMS = ("in_shape", "num_classes")


def mlp(
    in_shape: Sequence[int],
    num_classes: int,
    hidden: Count = 128,
    depth: Size = 2,
    dropout: Fraction = 0.1,
) -> nn.Sequential:
    """A flatten-then-dense network with ``depth`` hidden layers of width ``hidden``."""
    import math

    from torch import nn

    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(in_shape)
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def cnn(
    in_shape: Sequence[int],
    num_classes: int,
    channels: Sequence[Count] = (32, 64),
    kernel_size: Count = 3,
    dropout: Fraction = 0.1,
) -> nn.Sequential:
    """Conv blocks (conv, batch norm, ReLU, 2× pool while the map allows) then a linear head.

    Uses ``Conv1d`` for ``C×L`` inputs and ``Conv2d`` for ``C×H×W``; global average
    pooling makes the head independent of the input size.
    """
    from torch import nn

    one_d = len(in_shape) == 2
    conv, norm, pool, gap = (
        (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d)
        if one_d
        else (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)
    )
    layers: list[nn.Module] = []
    width, size = in_shape[0], min(in_shape[1:])
    for out_channels in channels:
        layers += [
            conv(width, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            norm(out_channels),
            nn.ReLU(),
        ]
        if size >= 4:  # keep at least a 2-wide map for the next block
            layers.append(pool(2))
            size //= 2
        width = out_channels
    layers += [gap(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(width, num_classes)]
    return nn.Sequential(*layers)


def torchvision_model(
    in_shape: Sequence[int],
    num_classes: int,
    name: str = "resnet18",
    min_size: Count = 32,
) -> nn.Sequential:
    """Any ``torchvision.models`` classifier by name, untrained, adapted to the input.

    Inputs smaller than ``min_size`` are upsampled (nearest), 1-D ``C×L`` signals are
    treated as ``C×1×L`` images, and a 1×1 convolution maps other channel counts to 3.
    """
    from torch import nn
    from torchvision.models import get_model

    layers: list[nn.Module] = []
    channels, *spatial = in_shape
    if len(spatial) == 1:
        layers.append(nn.Unflatten(2, (1, spatial[0])))
        spatial = [1, spatial[0]]
    if min(spatial) < min_size:
        layers.append(nn.Upsample(size=tuple(max(s, min_size) for s in spatial)))
    if channels != 3:
        # After the upsample, so no gradient flows through it (its CUDA backward
        # is nondeterministic).
        layers.append(nn.Conv2d(channels, 3, kernel_size=1))
    check_torchvision_name(name)
    layers.append(get_model(name, weights=None, num_classes=num_classes))
    return nn.Sequential(*layers)


def check_torchvision_name(name: str) -> None:
    """Refuse a name that is not one of torchvision's classifiers (imports torchvision)."""
    import difflib

    from torchvision import models as classifiers

    known = classifiers.list_models(module=classifiers)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        raise StageInputError(
            f"`{name}` is not a torchvision classifier; {hint}"
            "`python -c 'import torchvision; print(torchvision.models.list_models())'` lists them"
        )


def resolve_device(name: str) -> str:
    """`auto` means CUDA when available, else CPU."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise ValueError(f"`device` must be `auto`, `cpu` or `cuda`; got `{name}`")
    return name


@contextmanager
def portable_kernels(threads: int) -> Iterator[None]:
    """Torch's CPU math on ``threads`` threads, without oneDNN and NNPACK, for the block.

    Both choose their convolution kernels by the CPU they find at run time, and
    ``ONEDNN_MAX_CPU_ISA`` caps only oneDNN's instruction set, not the rest of that choice:
    with them, an AMD EPYC and an Intel Xeon trained two models under the same pins, and
    no setting of the pins on the Xeon gave the EPYC's.  Without them, convolutions are
    ATen's own (im2col, then MKL's matrix product: its vendor-neutral branch under
    :func:`pipeline.spec.pin_cpu_numerics`, which every stage run starts with), whose
    sums depend on the thread count: so the count is the stage's config, never the
    machine's core count.  The thread count and the flags come back after the block.
    """
    import torch

    mkldnn = torch.backends.mkldnn
    saved = torch.get_num_threads(), mkldnn.enabled
    try:
        torch.set_num_threads(threads)
        mkldnn.enabled = False  # only this flag: oneDNN's TF32 and precision settings stay
        with torch.backends.nnpack.flags(enabled=False):
            yield
    finally:
        torch.set_num_threads(saved[0])
        mkldnn.enabled = saved[1]


def describe(factory: Callable[..., Any], in_shape: Sequence[int], num_classes: int) -> dict:
    """The JSON record that rebuilds a model: factory path, all its kwargs, data params."""
    func = getattr(factory, "func", factory)  # a functools.partial from hydra-zen, or plain
    bound = inspect.signature(func).bind_partial(**getattr(factory, "keywords", {}))
    bound.apply_defaults()
    kwargs = {k: _plain(v) for k, v in bound.arguments.items() if k not in DATA_PARAMS}
    return {
        "factory": f"{func.__module__}.{func.__qualname__}",
        "in_shape": [int(d) for d in in_shape],
        "kwargs": kwargs,
        "num_classes": int(num_classes),
    }


def save(folder: Path, net: nn.Module, record: dict) -> None:
    """Write ``state_dict.pt`` (CPU tensors) and ``model.json`` into ``folder``."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
    torch.save(state, folder / STATE_FILE)
    write_json(folder / MODEL_FILE, record)


def load(folder: Path, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the model recorded in a `model` artifact, weights loaded, in eval mode."""
    import torch

    record = json.loads((folder / MODEL_FILE).read_text())
    # The record comes from an artifact: it may only name one of our own builders,
    # never an arbitrary importable callable.
    factories = _factories()
    factory = factories.get(record.get("factory"))
    if factory is None:
        raise StageInputError(
            f"`{folder / MODEL_FILE}` names factory `{record.get('factory')}`; a model artifact "
            f"can only be rebuilt by one of {', '.join(sorted(factories))}"
        )
    net = factory(record["in_shape"], record["num_classes"], **record["kwargs"])
    state = torch.load(folder / STATE_FILE, map_location=device, weights_only=True)
    net.load_state_dict(state)
    return net.to(device).eval()


def _plain(value: Any) -> Any:
    """Tuples and config containers as JSON-ready lists and dicts."""
    if isinstance(value, str | int | float | bool | None):
        return value
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value]


def _factories() -> dict[str, Callable[..., Any]]:
    # Made when called, not at import, so that importing this module runs none of their
    # bodies and an edit inside one keeps the declared configs (see `pipeline.core.outline`).
    return {f"{__name__}.{f.__qualname__}": f for f in (mlp, cnn, torchvision_model)}
