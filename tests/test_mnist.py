import gzip
import shutil

import numpy as np
import pytest

from probes.datasets import DatasetError, idx, load_splits, mnist
from probes.files import file_digest

MNIST = mnist.DOWNLOAD
NO_DOWNLOAD = {"npm_package": None, "mirrors": []}


def write_idx(path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_read_idx_real_files(mnist_dir):
    images, labels = idx.load(MNIST, mnist_dir, "train")
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)
    assert labels.min() == 0 and labels.max() == 9
    test_images, test_labels = idx.load(MNIST, mnist_dir, "t10k")
    assert test_images.shape == (10000, 28, 28) and len(test_labels) == 10000


def test_read_verified_accepts_good_and_names_corrupted_file(mnist_dir, tmp_path):
    good = mnist_dir / "t10k-labels-idx1-ubyte"
    assert MNIST.read_verified(good) == good.read_bytes()
    bad = tmp_path / good.name
    data = bytearray(good.read_bytes())
    data[100] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=f"{bad}.*does not match"):
        MNIST.read_verified(bad)


def test_read_idx_rejects_wrong_magic_and_truncation(tmp_path):
    f = tmp_path / "x"
    write_idx(f, np.zeros((3, 2, 2)), 2051)
    assert idx.read_idx(f).shape == (3, 2, 2)
    write_idx(f, np.zeros((3, 2, 2)), 1234)
    with pytest.raises(DatasetError, match="magic number 1234"):
        idx.read_idx(f)
    write_idx(f, np.zeros((3, 2, 2)), 2051)
    f.write_bytes(f.read_bytes()[:-1])
    with pytest.raises(DatasetError, match=r"expected 28 .*shape \(3, 2, 2\)"):
        idx.read_idx(f)


def test_a_file_changed_after_it_was_fetched_is_refused_at_every_read(mnist_dir, tmp_path, caplog):
    # 3,000 labels changed after a complete run were used without a check: the input probe's
    # validation error went from 0.12 to 0.23 with exit code 0
    d = tmp_path / "mnist"
    d.mkdir()
    for name in MNIST.files:
        shutil.copy(mnist_dir / name, d / name)
    labels = d / "train-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[8:3008] = bytes((b + 1) % 10 for b in data[8:3008])
    labels.write_bytes(bytes(data))
    got = file_digest(labels, "md5")
    with pytest.raises(DatasetError, match=rf"{labels}: MD5 {got} does not match {MNIST.md5[labels.name]}"):
        idx.load(MNIST, d, "train")
    settings = {"name": "mnist", "n_train": 100, "n_val": 100, "n_test": 100, "split_seed": 0}
    with pytest.raises(DatasetError, match="changed after it was fetched; delete it and rerun"):
        load_splits(settings, tmp_path)
    idx.load(MNIST, d, "t10k")  # the untouched test files still read
    # acquire keeps no damaged file: it is fetched again (here from the local copy), saying why not
    # the configured copy was used when that copy is the bad one
    MNIST.acquire(d, {"local_dir": mnist_dir, **NO_DOWNLOAD})
    idx.load(MNIST, d, "train")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / labels.name).write_bytes(bytes(data))
    labels.unlink()
    with pytest.raises(DatasetError):
        MNIST.acquire(d, {"local_dir": tmp_path / "bad", **NO_DOWNLOAD})
    assert f"train-labels-idx1-ubyte from local directory {tmp_path / 'bad'} has MD5 {got}" in caplog.text
    assert any(r.levelname == "WARNING" for r in caplog.records)


def test_acquire_from_local_gz_directory(mnist_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in MNIST.files:
        with open(mnist_dir / name, "rb") as fin, gzip.open(src / f"{name}.gz", "wb", compresslevel=1) as fout:
            shutil.copyfileobj(fin, fout)
    paths = MNIST.acquire(tmp_path / "out", {"local_dir": src, **NO_DOWNLOAD})
    assert [p.name for p in paths] == list(MNIST.files)
    for p in paths:
        MNIST.read_verified(p)


def test_acquire_names_file_and_sources_on_failure(mnist_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in MNIST.files:
        shutil.copy(mnist_dir / name, src / name)
    (src / "t10k-labels-idx1-ubyte").write_bytes(b"garbage")
    with pytest.raises(DatasetError) as err:
        MNIST.acquire(tmp_path / "out", {"local_dir": src, "npm_package": None, "mirrors": ["http://127.0.0.1:9/"]})
    msg = str(err.value)
    assert "t10k-labels-idx1-ubyte" in msg and f"local directory {src}: wrong MD5" in msg
    assert "mirror http://127.0.0.1:9/" in msg
    assert "train-images-idx3-ubyte" not in msg  # the good files were taken
    assert not (tmp_path / "out" / "t10k-labels-idx1-ubyte").exists()


def test_splits_sizes_disjoint_and_deterministic(mnist_dir):
    settings = {"name": "mnist", "n_train": 3000, "n_val": 1000, "n_test": 500, "split_seed": 7}
    a, b = load_splits(settings, mnist_dir.parent), load_splits(settings, mnist_dir.parent)
    assert [len(a[s][0]) for s in ("train", "val", "test")] == [3000, 1000, 500]
    assert a["train"][0].shape[1:] == (1, 28, 28) and a["train"][0].dtype == np.float32
    assert -0.5 <= a["train"][0].min() and a["train"][0].max() <= 0.5
    for s in a:
        np.testing.assert_array_equal(a[s][0], b[s][0])
        np.testing.assert_array_equal(a[s][1], b[s][1])
    train_rows = {r.tobytes() for r in a["train"][0].reshape(3000, -1)}
    assert not any(r.tobytes() in train_rows for r in a["val"][0].reshape(1000, -1))
    other = load_splits({**settings, "split_seed": 8}, mnist_dir.parent)
    assert not np.array_equal(other["train"][1], a["train"][1])
