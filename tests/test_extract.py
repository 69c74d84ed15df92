import h5py
import numpy as np
import pytest
import torch

from probes.activations import ActivationError, read_point, write_activations
from probes.capture import capture
from probes.checkpoints import CheckpointError
from probes.datasets import load_splits
from probes.extract import extract
from probes.factory import build_model
from probes.train import train_segment

POINTS = ["input", "conv1_preact", "conv2_postpool", "logits"]


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("extract")
    ds = {"name": "mnist", "n_train": 300, "n_val": 70, "n_test": 50, "split_seed": 1}
    settings = {
        "experiment": "t", "repeat": 0, "seed": 0, "model": {"factory": "probes.models:MnistConvnet"}, "dataset": ds,
        "train": {"optimizer": "sgd", "epochs": 1, "batch_size": 64, "lr": 0.01, "lr_decay": 0.95, "momentum": 0.9,
                  "weight_decay": 5e-4, "log_every": 5},
    }  # fmt: skip
    train_segment(settings, data_dir, 0, tmp / "ck0.pt")
    state = train_segment(settings, data_dir, 3, tmp / "ck.pt", start=tmp / "ck0.pt")
    ex = {**{k: settings[k] for k in ("experiment", "repeat", "model", "dataset")}, "points": POINTS,
          "extract": {"batch_size": 33, "compression": "gzip", "compression_level": 1, "shuffle": True, "dtype": "float32"}}  # fmt: skip
    metrics = extract(ex, tmp / "ck.pt", data_dir, tmp / "act.h5", tmp / "model.json")
    return tmp / "act.h5", state, load_splits(ds, data_dir), metrics


def test_streamed_activations_equal_a_direct_forward_pass(extracted):
    path, state, splits, metrics = extracted
    model = build_model({"factory": "probes.models:MnistConvnet"}).eval()
    model.load_state_dict(state["state_dict"])
    for split, (x, y) in splits.items():
        with torch.no_grad():
            direct, _ = capture(model, list(model.points), torch.from_numpy(x))
        for point in POINTS:
            got, labels = read_point(path, split, point)
            assert got.dtype == np.float32 and got.shape == (len(x), direct[point][0].numel())
            np.testing.assert_allclose(got, direct[point].flatten(1).numpy(), rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(labels, y)  # row order matches the labels
        acc = (direct["logits"].argmax(1).numpy() == y).mean()
        assert metrics[f"{split}_acc"] == pytest.approx(acc)


def test_file_layout_and_attributes(extracted):
    path, state, _, _ = extracted
    with h5py.File(path) as f:
        assert f.attrs["complete"] and f.attrs["step"] == 3 and list(f.attrs["points"]) == POINTS
        assert set(f) == {"train", "val", "test"}
        ds = f["train/conv1_preact"]
        assert ds.compression == "gzip" and ds.chunks[1] == 25088 and ds.chunks[0] < 300
        assert ds.attrs["layer_index"] == 1 and ds.attrs["width"] == 25088
        assert len(f.attrs["model_fingerprint"]) == 16


def test_reader_refuses_incomplete_damaged_or_foreign_files(extracted, tmp_path):
    path = extracted[0]
    with pytest.raises(ActivationError, match="attribute experiment is 't', expected 'other'"):
        read_point(path, "train", "input", {"experiment": "other"})
    with pytest.raises(ActivationError, match="no dataset 'train/fc1_postact'"):
        read_point(path, "train", "fc1_postact")
    incomplete = tmp_path / "incomplete.h5"
    incomplete.write_bytes(path.read_bytes())
    with h5py.File(incomplete, "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(ActivationError, match="not marked complete"):
        read_point(incomplete, "train", "input")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ActivationError, match=str(truncated)):
        read_point(truncated, "train", "conv1_preact")


def test_extraction_refuses_a_checkpoint_of_another_experiment_or_model(extracted, tmp_path, data_dir):
    path, state, _, _ = extracted
    checkpoint = path.parent / "ck.pt"
    ex = {"experiment": "t", "repeat": 0, "model": {"factory": "probes.models:MnistConvnet"}, "dataset": state["dataset"],
          "points": ["input"], "extract": {"batch_size": 50, "compression": None, "compression_level": 1,
                                           "shuffle": False, "dtype": "float32"}}  # fmt: skip
    with pytest.raises(CheckpointError, match=f"{checkpoint}: experiment is 't', expected 'other'"):
        extract({**ex, "experiment": "other"}, checkpoint, data_dir, tmp_path / "a.h5")
    with pytest.raises(CheckpointError, match=f"{checkpoint}: model fingerprint .* does not match"):
        extract(
            {**ex, "model": {"factory": "probes.models:MnistConvnet", "kwargs": {"fc_units": 256}}},
            checkpoint,
            data_dir,
            tmp_path / "b.h5",
        )
    assert list(tmp_path.iterdir()) == []


def test_a_byte_damaged_on_disk_fails_the_read_naming_file_and_dataset(extracted, tmp_path, data_dir):
    path, state, _, _ = extracted
    ex = {"experiment": "t", "repeat": 0, "model": {"factory": "probes.models:MnistConvnet"}, "dataset": state["dataset"],
          "points": ["input", "fc1_postact"], "extract": {"batch_size": 100, "compression": None,
                                                          "compression_level": 1, "shuffle": False, "dtype": "float32"}}  # fmt: skip
    extract(ex, path.parent / "ck.pt", data_dir, tmp_path / "plain.h5")  # uncompressed: only the checksum can tell
    raw = bytearray((tmp_path / "plain.h5").read_bytes())
    with h5py.File(tmp_path / "plain.h5") as f:
        assert f["train/fc1_postact"].fletcher32 and f["train/labels"].fletcher32
        chunk = f["train/fc1_postact"].id.get_chunk_info(0)
    raw[chunk.byte_offset + chunk.size // 2] ^= 0x01
    (tmp_path / "flipped.h5").write_bytes(raw)
    with pytest.raises(ActivationError, match=f"{tmp_path / 'flipped.h5'}: train/fc1_postact is damaged"):
        read_point(tmp_path / "flipped.h5", "train", "fc1_postact")
    assert read_point(tmp_path / "flipped.h5", "val", "fc1_postact")[0].shape == (70, 512)  # the rest reads


def test_float16_files_read_back_as_float32_at_float16_precision_and_refuse_values_beyond_its_range(
    extracted, tmp_path, data_dir
):
    path, state, _, _ = extracted
    ex = {"experiment": "t", "repeat": 0, "model": {"factory": "probes.models:MnistConvnet"}, "dataset": state["dataset"],
          "points": ["input", "conv2_postpool"], "extract": {"batch_size": 100, "compression": None,
                                                          "compression_level": 1, "shuffle": False, "dtype": "float16"}}  # fmt: skip
    extract(ex, path.parent / "ck.pt", data_dir, tmp_path / "half.h5")
    with h5py.File(tmp_path / "half.h5") as f:
        assert f["train/conv2_postpool"].dtype == np.float16 and f["train/conv2_postpool"].fletcher32
    for point in ex["points"]:
        full, _ = read_point(path, "train", point)
        half, _ = read_point(tmp_path / "half.h5", "train", point)
        assert half.dtype == np.float32
        np.testing.assert_array_equal(half, full.astype(np.float16).astype(np.float32))
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(40, 3)).astype(np.float32)
    collapsed = (1.0 + 1e-6 * rng.normal(size=(40, 3))).astype(np.float32)  # a spread float16 rounds away
    with write_activations(tmp_path / "mixed.h5", {"step": 0}, None, 0, False, "float16") as out:
        for split in ("train", "val"):
            out.split(split, np.zeros(20, np.int64))
            for i, (point, x) in enumerate((("normal", normal), ("collapsed", collapsed))):
                out.rows(split, point, i, 0, x[:20] if split == "train" else x[20:])
            for start in range(20):  # a first block of one row: float16 cannot be checked on it
                out.rows(split, "row_by_row", 2, start, normal[start : start + 1])
    with h5py.File(tmp_path / "mixed.h5") as f:
        assert [f[f"{s}/normal"].dtype for s in ("train", "val")] == [np.float16] * 2
        assert [f[f"{s}/collapsed"].dtype for s in ("train", "val")] == [np.float32] * 2
        assert f["train/row_by_row"].dtype == np.float32
    np.testing.assert_array_equal(read_point(tmp_path / "mixed.h5", "val", "collapsed")[0], collapsed[20:])
    with pytest.raises(ActivationError, match=r"train/big: values up to 7e\+04 .* exceed float16's range"):
        with write_activations(tmp_path / "big.h5", {"step": 0}, None, 0, False, "float16") as out:
            out.split("train", np.zeros(4, np.int64))
            out.rows("train", "big", 0, 0, np.array([[1.0], [2.0]], np.float32))
            out.rows("train", "big", 0, 2, np.array([[3.0], [7e4]], np.float32))
    assert not (tmp_path / "big.h5").exists()
