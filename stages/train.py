"""Stage `train`: fit a model on the dataset's train split, keep the best validation epoch."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra_zen import MISSING, builds

from pipeline.spec import Output, StageSpec, checkpoint_dir, note, report
from stages import app, data, models
from stages.values import Count, Device, NonNegative, Positive

if TYPE_CHECKING:
    import torch
    from torch import nn


def train(
    dataset: Path,
    out: Path,
    model: Callable[..., Any],
    epochs: Count = 30,
    lr: Positive = 0.003,
    batch_size: Count = 64,
    weight_decay: NonNegative = 0.0001,
    seed: int = 0,
    threads: Count = 1,
    device: Device = "auto",
) -> dict[str, float]:
    """Train ``model(in_shape, num_classes)`` with AdamW; write `model` to ``out/model``.

    The checkpoint is the epoch with the best validation accuracy, ties going to the lower
    validation loss, then to the earlier epoch (the last epoch if there is no validation
    split).  On CPU the same arguments give the same ``state_dict.pt`` bytes.
    """
    import torch

    if epochs < 1:  # the declared range, for a plain Python call (not checked there)
        raise ValueError(f"`epochs` must be at least 1; got {epochs}")
    dataset, out = Path(dataset), Path(out)
    meta = data.read_meta(dataset)
    with _deterministic(seed, threads, models.resolve_device(device)) as dev:
        net = model(meta["input_shape"], meta["num_classes"]).to(dev)
        optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        fit, held_out = (_tensors(dataset, split, dev) for split in ("train", "val"))
        scratch = checkpoint_dir()
        saved_at = scratch / "train.pt" if scratch is not None else None
        history, best = _fit(net, optimizer, fit, held_out, epochs, batch_size, seed, saved_at)
    folder = out / "model"
    models.save(folder, net, models.describe(model, meta["input_shape"], meta["num_classes"]))
    data.write_json(folder / "history.json", {"best_epoch": best, "epochs": history})
    chosen = history[best - 1]
    return {
        "best_epoch": best,
        "epochs": epochs,
        "train_loss": chosen["train_loss"],
        "val_accuracy": chosen["val_accuracy"],
        "val_loss": chosen["val_loss"],
    }


def _fit(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    fit: tuple[torch.Tensor, torch.Tensor],
    held_out: tuple[torch.Tensor, torch.Tensor],
    epochs: int,
    batch_size: int,
    seed: int,
    checkpoint: Path | None = None,
) -> tuple[list[dict[str, float]], int]:
    """Train for ``epochs``, leave the best epoch's weights in ``net``; history and its epoch.

    With a ``checkpoint``, every epoch's end is saved and a run killed midway resumes from
    its last saved epoch to the same bits as a run never interrupted.
    """
    import torch

    # Shuffling on a CPU generator of our own keeps the order independent of device.
    generator = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    best_key, best_epoch, best_state = (-1.0, 0.0), 0, {}
    saved = _load_checkpoint(checkpoint, next(net.parameters()).device)
    if saved is not None:
        net.load_state_dict(saved["net"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"].cpu())
        _set_rng(saved["rng"])
        history, best_key, best_epoch = saved["history"], tuple(saved["best_key"]), saved["best"]
        best_state = saved["best_state"]
        note("train", f"resumed from epoch {len(history)}")
    for epoch in range(len(history) + 1, epochs + 1):
        started = time.perf_counter()
        train_loss = _epoch(net, optimizer, *fit, batch_size, generator, epoch)
        val_loss, val_accuracy = _score(net, *held_out, batch_size)
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss}
        history.append({**row, "val_accuracy": val_accuracy})
        if (val_accuracy, -val_loss) > best_key or len(held_out[1]) == 0:
            best_key, best_epoch = (val_accuracy, -val_loss), epoch
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        if checkpoint is not None and epoch < epochs:
            _save_checkpoint(
                checkpoint,
                net=net.state_dict(),
                optimizer=optimizer.state_dict(),
                generator=generator.get_state(),
                rng=_rng(),
                history=history,
                best_key=list(best_key),
                best=best_epoch,
                best_state=best_state,
            )
        report("train", **history[-1], seconds=round(time.perf_counter() - started, 2))
    net.load_state_dict(best_state)
    return history, best_epoch


# Checkpoints are plain functions, not a class: a class body runs at import, and the
# declarations cache (pipeline.core.outline) would count everything its methods name as
# reachable from import time.
def _load_checkpoint(path: Path | None, device: torch.device) -> dict[str, Any] | None:
    """The end of the last finished epoch, or None (none yet, or unreadable: start over)."""
    import torch

    if path is None or not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # damaged or from another version: start over
        note("train", f"checkpoint `{path}` unreadable ({type(exc).__name__}); starting over")
        return None
    return state if isinstance(state, dict) else None


def _save_checkpoint(path: Path, **state: Any) -> None:
    """Written whole under another name, then renamed: a kill leaves the previous epoch's."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _rng() -> dict[str, Any]:
    """Every random state train draws from: torch's CPU generator (dropout) and CUDA's."""
    import torch

    states: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng(states: Mapping[str, Any]) -> None:
    import torch

    torch.set_rng_state(states["cpu"].cpu())
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])


@contextmanager
def _deterministic(seed: int, threads: int, device: str) -> Iterator[torch.device]:
    """Seed torch and pin its global knobs for the block, then restore them."""
    import torch

    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    if device == "cuda":
        # cuBLAS is only deterministic with a fixed workspace; must precede CUDA init.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    # Some CUDA kernels (adaptive pooling backward) have no deterministic version:
    # there we settle for a warning; bit-identical results are promised on CPU only.
    _deterministic_algorithms(True, warn_only=device == "cuda")
    try:
        with models.portable_kernels(threads):
            yield torch.device(device)
    finally:
        _deterministic_algorithms(*saved)


def _deterministic_algorithms(mode: bool, warn_only: bool) -> None:
    """``torch.use_deterministic_algorithms`` without its import of torch's compiler.

    The public call also sets a flag of `torch.compile` (`torch._inductor.config`),
    importing torch._dynamo on the way: 1.4 s of a 7 s pipeline here. Nothing here is
    compiled, so only the runtime flag is set, through the call the public one makes.
    """
    import torch

    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:  # another torch: the public call
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        setter(mode, warn_only=warn_only)


def _tensors(folder: Path, split: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    x, y = data.read_split(folder, split)
    return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)


def _epoch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    epoch: int,
) -> float:
    """One pass over shuffled mini-batches; returns the mean training loss."""
    import torch
    from tqdm import tqdm

    net.train()
    order = torch.randperm(len(y), generator=generator).to(y.device)
    batches = torch.split(order, batch_size)
    # Summed on the device, in float64 (the same sums as Python floats): reading the loss
    # after each batch would make a GPU wait for every step.
    total = torch.zeros((), dtype=torch.float64, device=y.device)
    for index in tqdm(batches, desc=f"epoch {epoch}", leave=False, file=sys.stderr, disable=None):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x[index]), y[index])
        loss.backward()
        optimizer.step()
        total += loss.detach().double() * len(index)
    return float(total) / len(y)


def _score(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``net`` on ``(x, y)``."""
    import torch

    net.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for xb, yb in zip(torch.split(x, batch_size), torch.split(y, batch_size), strict=True):
            logits = net(xb)
            loss += float(torch.nn.functional.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    return loss / max(len(y), 1), correct / max(len(y), 1)


def _model_config(factory: Callable[..., Any], **kwargs: Any) -> Any:
    return builds(
        factory,
        populate_full_signature=True,
        zen_partial=True,
        zen_exclude=models.DATA_PARAMS,
        hydra_convert="all",
        **kwargs,
    )


def check(config: Mapping[str, Any]) -> None:
    """Refuse, before anything runs, a torchvision model name torchvision does not know."""
    model = config.get("model") or {}
    if str(model.get("_target_", "")).endswith(".torchvision_model"):
        models.check_torchvision_name(str(model.get("name")))


_TORCHVISION = (
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "vgg11",
    "squeezenet1_0",
)

SPEC = StageSpec(
    name="train",
    task=train,
    config=builds(
        train,
        populate_full_signature=True,
        hydra_convert="all",
        hydra_defaults=["_self_", {"model": "cnn"}],
    ),
    uses=("dataset",),
    logs=(Output("model", "model"),),
    check=check,
    groups={
        "model": {
            "mlp": _model_config(models.mlp),
            "cnn": _model_config(models.cnn),
            "torchvision": _model_config(models.torchvision_model, name=MISSING),
            **{n: _model_config(models.torchvision_model, name=n) for n in _TORCHVISION},
        }
    },
)

if __name__ == "__main__":
    app.main(SPEC)
