"""Dataset loaders, the seeded split, and the on-disk format of the `dataset` artifact."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pipeline.spec import StageInputError
from stages.values import Count

if TYPE_CHECKING:
    import numpy as np
    from torchvision.datasets import VisionDataset

SPLITS = ("train", "val", "test")
META_FILE = "meta.json"


class Loaded(NamedTuple):
    """A whole dataset in memory: float32 inputs N×C×H×W or N×C×L, int64 labels."""

    x: np.ndarray
    y: np.ndarray
    classes: list[str]
    source: str


class DatasetNotFoundError(StageInputError):
    """A dataset's files are not on disk and downloading was not allowed."""


def digits() -> Loaded:
    """scikit-learn's bundled 8×8 digits (1,797 images), scaled to [0, 1]."""
    import numpy as np

    # The csv.gz ships inside scikit-learn; reading it directly avoids the 1.7 s
    # import of sklearn.datasets (find_spec locates the package without importing it).
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise DatasetNotFoundError("dataset `digits` needs scikit-learn installed; found none")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    x = (table[:, :-1] / 16.0).reshape(-1, 1, 8, 8)
    y = table[:, -1].astype(np.int64)
    return Loaded(x, y, [str(d) for d in range(10)], "sklearn:digits.csv.gz")


def mnist1d(num_samples: Count = 5000, seed: int = 0) -> Loaded:
    """MNIST-1D generated locally (never downloaded): N×1×40 signals.

    5000 samples, as the `mnist1d` package and its paper (4000 to train, 1000 to test).
    """
    import numpy as np
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    data = make_dataset(args)
    # mnist1d splits 80/20 itself; we pool both parts and let `split` decide.
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)[:, None, :]
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    return Loaded(
        x, y, [str(d) for d in range(10)], f"mnist1d:num_samples={num_samples},seed={seed}"
    )


def mnist(root: str = "data", download: bool = False) -> Loaded:
    """MNIST (train and test pooled), N×1×28×28 in [0, 1]."""
    from torchvision.datasets import MNIST

    return _vision(MNIST, "mnist", root, download)


def fashion_mnist(root: str = "data", download: bool = False) -> Loaded:
    """Fashion-MNIST (train and test pooled), N×1×28×28 in [0, 1]."""
    from torchvision.datasets import FashionMNIST

    return _vision(FashionMNIST, "fashion_mnist", root, download)


def cifar10(root: str = "data", download: bool = False, verify_md5: bool = True) -> Loaded:
    """CIFAR-10 (train and test pooled), N×3×32×32 in [0, 1].

    ``verify_md5=False`` reads user-provided batches whose checksums differ from the
    official release (a subset, a re-pickled copy, test fixtures).
    """
    from torchvision.datasets import CIFAR10

    cls: type[CIFAR10] = CIFAR10
    if not verify_md5:
        # torchvision offers no switch for its md5 check; a subclass whose file
        # table carries no checksums makes check_integrity test existence only.
        cls = type(
            "UncheckedCIFAR10",
            (CIFAR10,),
            {
                "train_list": [[name, None] for name, _ in CIFAR10.train_list],
                "test_list": [[name, None] for name, _ in CIFAR10.test_list],
                "meta": {**CIFAR10.meta, "md5": None},
            },
        )
    return _vision(cls, "cifar10", root, download)


def _vision(cls: type[VisionDataset], name: str, root: str, download: bool) -> Loaded:
    import numpy as np

    try:
        parts = [cls(root, train=train, download=download) for train in (True, False)]
    except RuntimeError as err:
        if download:
            raise
        raise DatasetNotFoundError(
            f"dataset `{name}` not found (or corrupted) under root `{Path(root).resolve()}` "
            f"({err}). Set `prepare_data.dataset.download=true` to download it, "
            f"or `prepare_data.dataset.root=DIR` to point at a copy."
        ) from err
    x = np.concatenate([np.asarray(p.data) for p in parts])
    # MNIST-like data is N×H×W, CIFAR is N×H×W×C: bring both to N×C×H×W.
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    y = np.concatenate([np.asarray(p.targets, dtype=np.int64) for p in parts])
    x = np.ascontiguousarray(x, dtype=np.float32) / np.float32(255.0)
    return Loaded(x, y, [str(c) for c in parts[0].classes], f"torchvision:{name}")


def split_indices(
    y: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Stratified, seeded split of ``range(len(y))`` into sorted train/val/test indices."""
    import numpy as np

    if not len(y):
        raise StageInputError("the dataset is empty: it has no samples to split")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise StageInputError(
            f"split fractions must be in [0, 1) and sum below 1; "
            f"got val_fraction={val_fraction}, test_fraction={test_fraction}"
        )
    rng = np.random.Generator(np.random.PCG64(seed))
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_test = round(len(members) * test_fraction)
        n_val = round(len(members) * val_fraction)
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])
    return {s: np.sort(np.concatenate(parts[s])).astype(np.int64) for s in SPLITS}


def write_dataset(folder: Path, data: Loaded, splits: dict[str, np.ndarray]) -> dict[str, Any]:
    """Write one ``.npy`` per array plus ``meta.json`` (byte-reproducible); return the meta."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    # np.save writes a header and the raw buffer only: no timestamps, unlike np.savez.
    for split, index in splits.items():
        np.save(folder / f"x_{split}.npy", data.x[index], allow_pickle=False)
        np.save(folder / f"y_{split}.npy", data.y[index], allow_pickle=False)
    meta = {
        "classes": list(data.classes),
        "counts": {s: len(i) for s, i in splits.items()},
        "input_shape": [int(d) for d in data.x.shape[1:]],
        "num_classes": len(data.classes),
        "shapes": {s: [len(i), *map(int, data.x.shape[1:])] for s, i in splits.items()},
        "source": data.source,
    }
    write_json(folder / META_FILE, meta)
    return meta


def read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The inputs and labels of one split of a `dataset` artifact."""
    import numpy as np

    return (
        np.load(folder / f"x_{split}.npy", allow_pickle=False),
        np.load(folder / f"y_{split}.npy", allow_pickle=False),
    )


def read_meta(folder: Path) -> dict[str, Any]:
    """The ``meta.json`` of a `dataset` artifact."""
    return json.loads((folder / META_FILE).read_text())


def write_json(path: Path, obj: Any) -> None:
    """Write JSON the project's way: sorted keys, indent 2, trailing newline."""
    path.write_text(json.dumps(obj, sort_keys=True, indent=2) + "\n")
