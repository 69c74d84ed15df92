"""The dataset registry: a dataset's reader on files the tests write, MNIST and gaussian_separable
unchanged, the schema in step with the registry."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from probes import datasets
from probes.config import ConfigError, load_yaml, validate
from probes.datasets import DatasetError, load_splits, mnist
from probes.files import fingerprint

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
SPLITS = ("train", "val", "test")


# -- the code before the registry, kept here only to compare against --------------------------------
OLD_MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


def _old_load(directory: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if train else "t10k"
    images = (directory / f"{prefix}-images-idx3-ubyte").read_bytes()
    labels = (directory / f"{prefix}-labels-idx1-ubyte").read_bytes()
    n, h, w = (int.from_bytes(images[4 * i : 4 * i + 4], "big") for i in (1, 2, 3))
    return np.frombuffer(images, np.uint8, offset=16).reshape(n, h, w), np.frombuffer(labels, np.uint8, offset=8)


def _old_mnist_splits(settings: dict, data_dir: Path) -> dict:
    n_train, n_val, n_test = settings["n_train"], settings["n_val"], settings["n_test"]
    images, labels = _old_load(data_dir, train=True)
    order = np.random.default_rng(settings["split_seed"]).permutation(len(images))
    test_images, test_labels = _old_load(data_dir, train=False)

    def prep(x: np.ndarray) -> np.ndarray:
        return ((x.astype(np.float32) - 127.5) / 255.0)[:, None, :, :]

    train_idx, val_idx = order[:n_train], order[n_train : n_train + n_val]
    return {
        "train": (prep(images[train_idx]), labels[train_idx].astype(np.int64)),
        "val": (prep(images[val_idx]), labels[val_idx].astype(np.int64)),
        "test": (prep(test_images[:n_test]), test_labels[:n_test].astype(np.int64)),
    }


def _old_gaussian_separable_splits(settings: dict, repeat: int) -> dict:
    rng = np.random.default_rng([settings["split_seed"], repeat])
    w = rng.standard_normal(settings["dim"])
    out = {}
    for split in SPLITS:
        x = rng.standard_normal((settings[f"n_{split}"], settings["dim"])).astype(np.float32)
        out[split] = (x, (x.astype(np.float64) @ w > 0).astype(np.int64))
    return out


def assert_same_splits(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for split, arrays in a.items():
        for got, want in zip(arrays, b[split]):
            assert got.dtype == want.dtype and got.shape == want.shape, split
            np.testing.assert_array_equal(got, want)


def test_mnist_and_gaussian_separable_give_the_arrays_and_fingerprints_of_before(data_dir):
    for settings in ({"name": "mnist", "n_train": 5000, "n_val": 1000, "n_test": 800, "split_seed": 3},
                     {"name": "mnist", "n_train": 50000, "n_val": 10000, "n_test": 10000, "split_seed": 0}):  # fmt: skip
        assert_same_splits(load_splits(settings, data_dir), _old_mnist_splits(settings, data_dir / "mnist"))
        assert datasets.fingerprint(settings) == fingerprint({"dataset": settings, "md5": OLD_MNIST_MD5})
    g = {"name": "gaussian_separable", "dim": 32, "n_train": 300, "n_val": 100, "n_test": 100, "split_seed": 5}
    for repeat in (0, 7):
        assert_same_splits(load_splits(g, ".", repeat), _old_gaussian_separable_splits(g, repeat))
        assert datasets.fingerprint(g, repeat) == fingerprint({"dataset": g, "repeat": repeat})


# -- IDX datasets on small files ---------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray) -> str:
    """Write ``array`` (uint8; 3-D images or 1-D labels) as an IDX file; return its MD5."""
    magic = 2051 if array.ndim == 3 else 2049
    data = (
        magic.to_bytes(4, "big")
        + b"".join(d.to_bytes(4, "big") for d in array.shape)
        + array.astype(np.uint8).tobytes()
    )
    path.write_bytes(data)
    return hashlib.md5(data).hexdigest()


def small_idx(directory: Path, monkeypatch, download, n_train: int = 40, n_test: int = 12) -> dict:
    """Four small IDX files in ``directory``, their MD5s registered in ``download`` for the test."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        monkeypatch.setitem(download.md5, name, write_idx(directory / name, a))
    return arrays


def test_an_idx_dataset_reads_its_verified_files_into_the_mnist_split(tmp_path, monkeypatch):
    a = small_idx(tmp_path / "mnist", monkeypatch, mnist.DOWNLOAD)
    settings = {"name": "mnist", "n_train": 25, "n_val": 10, "n_test": 12, "split_seed": 4}
    s = load_splits(settings, tmp_path)
    order = np.random.default_rng(4).permutation(40)
    images, labels = a["train-images-idx3-ubyte"], a["train-labels-idx1-ubyte"]
    np.testing.assert_array_equal(s["train"][0], ((images[order[:25]] - 127.5) / 255.0).astype(np.float32)[:, None])
    np.testing.assert_array_equal(s["val"][1], labels[order[25:35]])
    np.testing.assert_array_equal(s["test"][1], a["t10k-labels-idx1-ubyte"])
    assert s["train"][0].shape == (25, 1, 28, 28) and s["train"][1].dtype == np.int64
    assert datasets.input_shape(settings) == (1, 28, 28) and datasets.classes(settings) == 10
    assert [(p.splits, p.size) for p in datasets.sizes(settings)] == [(("train", "val"), 60000), (("test",), 10000)]
    # a file changed after it was fetched is refused at every read, naming it and both digests
    labels_file = tmp_path / "mnist" / "t10k-labels-idx1-ubyte"
    labels_file.write_bytes(labels_file.read_bytes()[:-1] + b"\x09")
    got = hashlib.md5(labels_file.read_bytes()).hexdigest()
    expected = mnist.DOWNLOAD.md5[labels_file.name]
    with pytest.raises(DatasetError, match=rf"{labels_file}: MD5 {got} does not match {expected} expected"):
        load_splits(settings, tmp_path)


# -- the registry, the schema and the workflow -------------------------------------------------------
def test_the_schema_names_the_registrys_datasets_and_downloads():
    schema = load_yaml(SCHEMA)
    assert schema["$defs"]["experiment"]["properties"]["dataset"]["properties"]["name"]["enum"] == list(
        datasets.DATASETS
    )
    assert list(schema["properties"]["data"]["properties"]) == list(datasets.DOWNLOADS)


@pytest.fixture
def config() -> dict:
    return copy.deepcopy(load_yaml(REPO / "config.yaml"))


def test_an_old_mnist_sources_key_is_refused_naming_its_new_place(config):
    config["mnist"] = config.pop("data")["mnist"]
    with pytest.raises(ConfigError, match="mnist: the MNIST sources moved to data.mnist"):
        validate(config, SCHEMA)
