"""Tests for the dataset loaders, the split and the `dataset` artifact format."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stages import data
from stages.prepare_data import check, prepare_data
from tests.files import write_mnist


def test_digits_loads_the_bundled_images() -> None:
    x, y, classes, source = data.digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert y.dtype == np.int64 and sorted(set(y.tolist())) == list(range(10))
    assert classes == [str(d) for d in range(10)]
    assert "digits" in source


def test_mnist1d_is_generated_locally_and_seeded() -> None:
    first = data.mnist1d(num_samples=200, seed=3)
    again = data.mnist1d(num_samples=200, seed=3)
    assert first.x.shape == (200, 1, 40) and first.x.dtype == np.float32
    assert first.y.dtype == np.int64 and np.bincount(first.y).tolist() == [20] * 10
    assert len(first.classes) == 10
    np.testing.assert_array_equal(first.x, again.x)
    assert not np.array_equal(first.x, data.mnist1d(num_samples=200, seed=4).x)


@settings(max_examples=50, deadline=None)
@given(
    labels=st.lists(st.integers(0, 4), min_size=1, max_size=200),
    val_fraction=st.floats(0, 0.45),
    test_fraction=st.floats(0, 0.45),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_is_a_seeded_stratified_partition(
    labels: list[int], val_fraction: float, test_fraction: float, seed: int
) -> None:
    y = np.asarray(labels, dtype=np.int64)
    splits = data.split_indices(y, val_fraction, test_fraction, seed)
    joined = np.concatenate([splits[s] for s in data.SPLITS])
    assert sorted(joined.tolist()) == list(range(len(y)))  # disjoint and complete
    for label in set(labels):
        n = labels.count(label)
        assert np.sum(y[splits["test"]] == label) == round(n * test_fraction)
    again = data.split_indices(y, val_fraction, test_fraction, seed)
    assert all(np.array_equal(splits[s], again[s]) for s in data.SPLITS)


def test_split_depends_on_the_seed() -> None:
    y = data.digits().y
    a, b = (data.split_indices(y, 0.1, 0.2, seed) for seed in (0, 1))
    assert len(a["test"]) == len(b["test"]) and not np.array_equal(a["test"], b["test"])


@pytest.mark.parametrize(("val", "test"), [(0.5, 0.5), (-0.1, 0.2), (0.1, 1.0)])
def test_split_rejects_bad_fractions(val: float, test: float) -> None:
    with pytest.raises(ValueError, match=r"fractions must be in \[0, 1\) and sum below 1"):
        data.split_indices(np.zeros(10, dtype=np.int64), val, test, 0)


def test_prepare_data_writes_reproducible_files(tmp_path: Path) -> None:
    metrics = prepare_data(data.digits, tmp_path / "a", seed=7)
    prepare_data(data.digits, tmp_path / "b", seed=7)
    names = sorted(p.name for p in (tmp_path / "a" / "dataset").iterdir())
    assert names == [
        "meta.json",
        *(f"{v}_{s}.npy" for v in "xy" for s in ("test", "train", "val")),
    ]
    for name in names:
        a, b = (tmp_path / d / "dataset" / name for d in "ab")
        assert a.read_bytes() == b.read_bytes(), name
    meta = data.read_meta(tmp_path / "a" / "dataset")
    assert metrics == {"n_train": 1259, "n_val": 179, "n_test": 359, "num_classes": 10}
    assert meta["counts"] == {"train": 1259, "val": 179, "test": 359}
    assert meta["input_shape"] == [1, 8, 8] and meta["shapes"]["test"] == [359, 1, 8, 8]
    x, y = data.read_split(tmp_path / "a" / "dataset", "val")
    assert x.shape == (179, 1, 8, 8) and y.dtype == np.int64


@pytest.mark.parametrize(
    ("loader", "folder"), [(data.mnist, "MNIST"), (data.fashion_mnist, "FashionMNIST")]
)
def test_mnist_like_loaders_read_raw_idx_files(loader, folder: str, tmp_path: Path) -> None:
    raw = write_mnist(tmp_path, folder=folder)
    images = np.fromfile(raw / "train-images-idx3-ubyte", dtype=np.uint8)[16:]
    x, y, classes, source = loader(root=str(tmp_path))
    assert x.shape == (17, 1, 28, 28) and x.dtype == np.float32
    assert y.tolist() == [i % 10 for i in range(12)] + list(range(5))
    np.testing.assert_allclose(x[:12].ravel(), images / 255.0, rtol=1e-6)
    assert len(classes) == 10 and source.endswith(loader.__name__)


def _write_cifar(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 9]}
        (folder / name).write_bytes(pickle.dumps(batch))
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))


def test_cifar10_reads_python_batches(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    x, y, classes, _ = data.cifar10(root=str(tmp_path), verify_md5=False)
    assert x.shape == (24, 3, 32, 32) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert y.tolist() == [0, 1, 2, 9] * 6 and classes[9] == "truck"
    first = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    np.testing.assert_allclose(x[0].ravel(), first["data"][0] / 255.0, rtol=1e-6)


def test_cifar10_checks_md5_by_default(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    with pytest.raises(data.DatasetNotFoundError, match="`cifar10` not found \\(or corrupted\\)"):
        data.cifar10(root=str(tmp_path))


@pytest.mark.parametrize("loader", [data.mnist, data.fashion_mnist, data.cifar10])
def test_missing_dataset_names_root_and_fix(loader, tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(
        data.DatasetNotFoundError, match=f"under root `{re.escape(str(root))}`.*download=true"
    ):
        loader(root=str(root))


def test_a_pickled_array_in_a_dataset_artifact_is_refused(tmp_path: Path) -> None:
    data.write_dataset(tmp_path, data.digits(), data.split_indices(data.digits().y, 0.1, 0.2, 0))
    np.save(tmp_path / "x_val.npy", np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle=False"):
        data.read_split(tmp_path, "val")


def test_an_empty_dataset_is_bad_input() -> None:
    with pytest.raises(data.StageInputError, match="the dataset is empty"):
        data.split_indices(np.array([], dtype=np.int64), 0.1, 0.2, 0)


def test_prepare_data_checks_its_dataset_folder_before_running() -> None:
    dataset = {"root": "nowhere", "download": False}
    with pytest.raises(data.StageInputError, match=r"dataset root `nowhere` does not exist"):
        check({"dataset": dataset})
    check({"dataset": {**dataset, "root": "."}})
