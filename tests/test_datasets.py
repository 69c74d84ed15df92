"""The dataset registry: every dataset's reader on files the tests write, the real Fashion-MNIST,
translated MNIST, user arrays and their errors, MNIST and gaussian_separable unchanged, and the
workflow planning a dataset's fetch job."""

from __future__ import annotations

import copy
import gzip
import hashlib
import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from conftest import REPO, SHARED_FASHION_MNIST, snakemake

from probes import datasets
from probes.config import ConfigError, load_yaml, validate
from probes.datasets import DatasetError, fashion_mnist, idx, load_splits, translated_mnist
from probes.files import fingerprint

SCHEMA = REPO / "src/probes/schema/config.schema.yaml"
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
    a = small_idx(tmp_path / "fashion_mnist", monkeypatch, fashion_mnist.DOWNLOAD)
    settings = {"name": "fashion_mnist", "n_train": 25, "n_val": 10, "n_test": 12, "split_seed": 4}
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
    labels_file = tmp_path / "fashion_mnist" / "t10k-labels-idx1-ubyte"
    labels_file.write_bytes(labels_file.read_bytes()[:-1] + b"\x09")
    got = hashlib.md5(labels_file.read_bytes()).hexdigest()
    expected = fashion_mnist.DOWNLOAD.md5[labels_file.name]
    with pytest.raises(DatasetError, match=rf"{labels_file}: MD5 {got} does not match {expected} expected"):
        load_splits(settings, tmp_path)


def test_fashion_mnist_comes_from_a_debian_package_directory_after_a_bad_local_copy(tmp_path, monkeypatch, caplog):
    a = small_idx(tmp_path / "made", monkeypatch, fashion_mnist.DOWNLOAD)
    debian = tmp_path / "usr/share/datasets/fashion-mnist"
    debian.mkdir(parents=True)
    for name in a:  # as the package ships them: gzip-compressed
        with open(tmp_path / "made" / name, "rb") as fin, gzip.open(debian / f"{name}.gz", "wb") as fout:
            shutil.copyfileobj(fin, fout)
    local = tmp_path / "local"
    local.mkdir()
    (local / "train-labels-idx1-ubyte").write_bytes(b"not these")
    caplog.set_level(logging.INFO)
    paths = fashion_mnist.DOWNLOAD.acquire(
        tmp_path / "out", {"local_dir": str(local), "debian_dir": str(debian), "mirrors": []}
    )
    assert [p.read_bytes() for p in paths] == [(tmp_path / "made" / n).read_bytes() for n in a]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(f"train-labels-idx1-ubyte from local directory {local} has MD5" in m for m in warned), warned
    assert any(f"t10k-images-idx3-ubyte: not taken from local directory {local}" in m for m in warned), warned
    assert f"train-images-idx3-ubyte from Debian package directory {debian}" in caplog.text
    # no package installed, no other source: the error says so for each file
    with pytest.raises(
        DatasetError, match=rf"Debian package directory {tmp_path / 'none'}: not there \(package not installed\)"
    ):
        fashion_mnist.DOWNLOAD.acquire(tmp_path / "out2", {"debian_dir": str(tmp_path / "none"), "mirrors": []})
    assert not list((tmp_path / "out2").iterdir())


def test_the_real_fashion_mnist(tmp_path):
    if not SHARED_FASHION_MNIST.is_dir():
        pytest.skip(f"no Fashion-MNIST copy at {SHARED_FASHION_MNIST} (set PROBES_FASHION_MNIST_DIR)")
    listed = dict(line.split()[::-1] for line in (SHARED_FASHION_MNIST / "MD5SUMS.txt").read_text().splitlines())
    assert listed == fashion_mnist.DOWNLOAD.md5  # the registry's digests are those of the published files
    fashion_mnist.DOWNLOAD.acquire(tmp_path / "fashion_mnist", {"local_dir": str(SHARED_FASHION_MNIST), "mirrors": []})
    images, labels = idx.load(fashion_mnist.DOWNLOAD, tmp_path / "fashion_mnist", "train")
    assert images.shape == (60000, 28, 28) and np.bincount(labels).tolist() == [6000] * 10
    settings = {"name": "fashion_mnist", "n_train": 5000, "n_val": 1000, "n_test": 10000, "split_seed": 0}
    s = load_splits(settings, tmp_path)
    assert [s[k][0].shape for k in SPLITS] == [(5000, 1, 28, 28), (1000, 1, 28, 28), (10000, 1, 28, 28)]
    assert -0.5 <= s["train"][0].min() and s["train"][0].max() <= 0.5 and set(np.unique(s["test"][1])) == set(range(10))


# -- translated MNIST --------------------------------------------------------------------------------
def ink(images: np.ndarray) -> np.ndarray:
    """Each image's pixel values, back in 0..255, summed."""
    return np.rint((images + 0.5) * 255).sum(axis=(1, 2))


def test_translated_mnist_places_each_whole_digit_at_its_rows_seeded_offset(data_dir):
    settings = {"name": "translated_mnist", "n_train": 3000, "n_val": 500, "n_test": 400, "split_seed": 2}
    t = load_splits(settings, data_dir)
    m = load_splits({**settings, "name": "mnist"}, data_dir)
    assert datasets.input_shape(settings) == (1, 40, 40) and t["train"][0].shape == (3000, 1, 40, 40)
    assert_same_splits(t, load_splits(settings, data_dir))  # deterministic
    for split in SPLITS:
        np.testing.assert_array_equal(t[split][1], m[split][1])  # MNIST's split, MNIST's labels
        digits, canvases = m[split][0][:, 0], t[split][0][:, 0]
        # nothing cropped: each canvas holds all of its digit's ink, and nothing else
        np.testing.assert_array_equal(ink(canvases), ink(digits))
    # the test split is the first rows of the test file; each row's window at its offset is its digit
    at = translated_mnist.offsets(2, "t10k", 10000)
    for i in range(400):
        (dy, dx) = at[i]
        np.testing.assert_array_equal(t["test"][0][i, 0, dy : dy + 28, dx : dx + 28], m["test"][0][i, 0])
    assert at.min() == 0 and at.max() == 12 and len({tuple(o) for o in at[:400]}) > 100
    # a training row's offset is that of its row of the training file (rows drawn by the split)
    order, train_at = np.random.default_rng(2).permutation(60000), translated_mnist.offsets(2, "train", 60000)
    for i in range(0, 3000, 97):
        (dy, dx) = train_at[order[i]]
        np.testing.assert_array_equal(t["train"][0][i, 0, dy : dy + 28, dx : dx + 28], m["train"][0][i, 0])
    # a row's offset depends on split_seed and the row alone: not on the sizes asked for, nor the split
    fewer = load_splits({**settings, "n_train": 10, "n_val": 10, "n_test": 50}, data_dir)
    np.testing.assert_array_equal(fewer["test"][0], t["test"][0][:50])
    np.testing.assert_array_equal(fewer["val"][0], t["train"][0][10:20])  # the same rows of the training file
    other = load_splits({**settings, "split_seed": 3, "n_train": 10, "n_val": 10}, data_dir)
    assert not np.array_equal(other["test"][0], t["test"][0])


# -- user arrays -------------------------------------------------------------------------------------
def arrays_settings(**kw) -> dict:
    return {"name": "arrays", "n_train": 6, "n_val": 3, "n_test": 3, "split_seed": 0, **kw}


def test_arrays_per_split_npz_and_one_hdf5_file_with_any_integer_labels(tmp_path):
    rng = np.random.default_rng(1)
    data = {s: (rng.standard_normal((n, 2, 3)), rng.choice([3, 7, 42], n)) for s, n in zip(SPLITS, (8, 4, 5))}
    data["val"][1][:] = 7  # labels need not occur in every split
    data["test"][1][0] = -5  # nor in the training split: the classes are every file's
    files = {}
    for s, (x, y) in data.items():
        files[s] = str(tmp_path / f"{s}.npz")
        np.savez(files[s], inputs=x, labels=y.astype(np.int16))
    settings = arrays_settings(files=files, x="inputs", y="labels")
    assert datasets.input_shape(settings) == (2, 3) and datasets.classes(settings) == 4
    assert [(p.splits, p.size) for p in datasets.sizes(settings)] == [(("train",), 8), (("val",), 4), (("test",), 5)]
    assert (
        datasets.user_files(settings) == [Path(files[s]) for s in SPLITS]
        and datasets.fetched_files(settings, "data") == []
    )
    splits = load_splits(settings, tmp_path)
    values = [-5, 3, 7, 42]  # class i is the i-th smallest label value, in every split
    for s in SPLITS:
        x, y = splits[s]
        n = settings[f"n_{s}"]
        assert x.dtype == np.float32 and y.dtype == np.int64
        np.testing.assert_array_equal(x, data[s][0][:n].astype(np.float32))
        np.testing.assert_array_equal(np.array(values)[y], data[s][1][:n])
    # one HDF5 file, split by a seeded permutation
    x, y = rng.standard_normal((30, 5)), rng.choice([3, 7, 42], 30)
    with h5py.File(tmp_path / "all.h5", "w") as f:
        f["group/x"], f["y"] = x, y
    one = arrays_settings(file=str(tmp_path / "all.h5"), x="group/x")
    assert datasets.input_shape(one) == (5,) and datasets.classes(one) == 3
    a, b = load_splits(one, tmp_path), load_splits(one, tmp_path)
    assert_same_splits(a, b)
    order = np.random.default_rng(0).permutation(30)
    np.testing.assert_array_equal(a["val"][0], x[order[6:9]].astype(np.float32))
    np.testing.assert_array_equal(np.array([3, 7, 42])[a["test"][1]], y[order[9:12]])
    assert not np.array_equal(load_splits({**one, "split_seed": 1}, tmp_path)["train"][0], a["train"][0])
    with pytest.raises(DatasetError, match=r"n_train \+ n_val \+ n_test = 33 exceeds the 30 rows of .*all.h5"):
        load_splits({**one, "n_train": 27}, tmp_path)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros(10), "y": np.zeros(10, int)}, r"inputs 'x' have shape \(10,\); expected \(rows, \.\.\.\)"),
        ({"x": np.zeros((10, 3)), "y": np.zeros((10, 1), int)}, r"labels 'y' have shape \(10, 1\); expected \(rows,\)"),
        ({"x": np.zeros((10, 3)), "y": np.arange(10) / 2}, r"labels 'y' are float64; expected integers"),
        ({"x": np.zeros((10, 3)), "y": np.zeros(9, int)}, r"10 rows of inputs 'x' but 9 labels 'y'; expected one label per row"),
        ({"x": np.zeros((10, 4)), "y": np.zeros(10, int)}, r"inputs 'x' are examples of shape \(4,\), but .*train.* are \(3,\)"),
        ({"inputs": np.zeros((10, 3)), "y": np.zeros(10, int)}, r"no array 'x'; it has \['inputs', 'y'\]"),
    ],
)  # fmt: skip
def test_bad_arrays_are_refused_at_start_up_naming_the_file(tmp_path, arrays, message):
    good = {"x": np.zeros((10, 3)), "y": np.arange(10)}
    files = {}
    for s in SPLITS:  # the validation file is the bad one, in either format
        files[s] = tmp_path / f"{s}.{'h5' if s == 'test' else 'npz'}"
        if s == "test":
            with h5py.File(files[s], "w") as f:
                for k, v in good.items():
                    f[k] = v
        else:
            np.savez(files[s], **(arrays if s == "val" else good))
    config = load_yaml(REPO / "workflow/config/tiny.yaml")
    exp = config["experiments"]["tiny_untrained_mlp"]
    exp["dataset"] = arrays_settings(files={s: str(p) for s, p in files.items()}, n_train=5)
    exp["model"]["kwargs"].update(n_in=3, n_classes=10)
    config.update(results=str(tmp_path / "results"), experiments={"tiny_untrained_mlp": exp}, figures={}, animations={})
    with pytest.raises(ConfigError, match=rf"experiments\.tiny_untrained_mlp\.dataset: {files['val']}: {message}"):
        validate(config, SCHEMA)
    with pytest.raises(DatasetError, match=rf"{files['val']}: {message}"):
        load_splits(exp["dataset"], tmp_path)  # a job checks again, on the data it reads
    assert not (tmp_path / "results").exists()


def test_an_arrays_experiment_is_checked_against_its_files_classes_and_rows(tmp_path, config):
    np.savez(tmp_path / "d.npz", x=np.zeros((50, 4), np.float32), y=np.repeat([3, 7, 42, 1, 0], 10))
    spec = config["experiments"]["fig3_untrained_mlp"]
    spec["dataset"] = arrays_settings(file=str(tmp_path / "d.npz"), n_train=20, n_val=10, n_test=10)
    spec["model"] = {**spec["model"], "kwargs": {**spec["model"]["kwargs"], "n_in": 4, "n_classes": 5}}
    spec["train"] = {**spec["train"], "epochs": 1}
    config.update(
        results=str(tmp_path / "results"), experiments={"fig3_untrained_mlp": spec}, figures={}, animations={}
    )
    validate(config, SCHEMA)
    spec["model"]["kwargs"]["n_classes"] = 2
    with pytest.raises(ConfigError, match=r"output has shape \[2\] for one input, but dataset 'arrays' has 5 classes"):
        validate(config, SCHEMA)
    spec["model"]["kwargs"]["n_classes"] = 5
    spec["dataset"]["n_test"] = 30
    with pytest.raises(ConfigError, match=r"dataset: n_train \+ n_val \+ n_test = 20 \+ 10 \+ 30 = 60 exceeds the 50 "
                                          rf"rows of {tmp_path / 'd.npz'} they are drawn from"):  # fmt: skip
        validate(config, SCHEMA)


@pytest.fixture
def config() -> dict:
    return copy.deepcopy(load_yaml(REPO / "config.yaml"))


# -- the registry, the schema and the workflow -------------------------------------------------------
def test_the_schema_names_the_registrys_datasets_and_downloads():
    schema = load_yaml(SCHEMA)
    assert schema["$defs"]["experiment"]["properties"]["dataset"]["properties"]["name"]["enum"] == list(
        datasets.DATASETS
    )
    assert list(schema["properties"]["data"]["properties"]) == list(datasets.DOWNLOADS)


@pytest.mark.parametrize(
    "dataset, message",
    [
        ({"name": "mnist", "file": "a.npz"}, r"experiments\.mnist_convnet\.dataset\.file = 'a\.npz': a setting of name: arrays only"),
        ({"name": "arrays"}, r"experiments\.mnist_convnet\.dataset: dataset: an arrays dataset takes files: .* or file:"),
    ],
)  # fmt: skip
def test_a_datasets_settings_are_its_own(config, dataset, message):
    spec = config["experiments"]["mnist_convnet"]
    spec["dataset"] = {**spec["dataset"], **dataset}
    with pytest.raises(ConfigError, match=message):
        validate(config, SCHEMA)


def test_an_old_mnist_sources_key_is_refused_naming_its_new_place(config):
    config["mnist"] = config.pop("data")["mnist"]
    with pytest.raises(ConfigError, match="mnist: the MNIST sources moved to data.mnist"):
        validate(config, SCHEMA)


@pytest.mark.slow
def test_a_fashion_mnist_experiment_plans_its_fetch_job_and_an_arrays_one_reads_its_files(tmp_path):
    config = yaml.safe_load((REPO / "workflow/config/tiny.yaml").read_text())
    exp = config["experiments"]["tiny_mlp_plain"]
    np.savez(tmp_path / "mine.npz", x=np.zeros((40, 784)), y=np.arange(40) % 10)
    config["experiments"] = {
        "tiny_fashion": {**exp, "dataset": {**exp["dataset"], "name": "fashion_mnist"}},
        "tiny_arrays": {
            **exp,
            "dataset": arrays_settings(file="mine.npz", n_train=20, n_val=10, n_test=10),
            "checkpoints": {"steps": [0, "end"]},
        },
    }
    config.update(figures={}, animations={})
    config.setdefault("data", {})["fashion_mnist"] = {"local_dir": "nowhere", "mirrors": []}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    jobs = dict(line.split()[:2] for line in run.stdout.splitlines() if line.strip() and line.split()[-1].isdigit()
                and not line.startswith(("total", "Job", "----")))  # fmt: skip
    assert jobs.get("fetch_fashion_mnist") == "1" and "fetch_mnist" not in jobs, run.stdout
    plan = snakemake(tmp_path, "-n", "-p").stdout
    assert "probes fetch fashion_mnist --out data/fashion_mnist" in plan and '"local_dir": "nowhere"' in plan
    assert "rule train:\n    input: mine.npz\n" in plan  # the arrays experiment's file is an input of its jobs
    assert "input: data/fashion_mnist/train-images-idx3-ubyte, data/fashion_mnist/train-labels-idx1-ubyte" in plan
