import struct
import zipfile

import pytest
import torch

from probes.checkpoints import CheckpointError, load_checkpoint
from probes.layers import trace_shapes
from probes.train import TrainingError, latest_checkpoint, train_segment

CONVNET = {"factory": "probes.models:MnistConvnet"}
WIDTHS = {
    "input": 784, "conv1_preact": 25088, "conv1_postact": 25088, "conv1_postpool": 6272,
    "conv2_preact": 12544, "conv2_postact": 12544, "conv2_postpool": 3136,
    "fc1_preact": 512, "fc1_postact": 512, "logits": 10,
}  # fmt: skip


def settings(**train):
    return {
        "experiment": "t", "repeat": 0, "seed": 3, "model": CONVNET,
        "dataset": {"name": "mnist", "n_train": 640, "n_val": 100, "n_test": 100, "split_seed": 0},
        "train": {"optimizer": "sgd", "epochs": 2, "batch_size": 64, "lr": 0.01, "lr_decay": 0.95, "momentum": 0.9,
                  "weight_decay": 5e-4, "log_every": 5, **train},
    }  # fmt: skip


def test_probe_points_in_paper_order_with_their_shapes():
    records = [r for r in trace_shapes(CONVNET, (1, 28, 28), "all", {}) if r["probed"]]
    assert {r["point"]: r["width"] for r in records} == WIDTHS and [r["point"] for r in records] == list(WIDTHS)
    shapes = {r["point"]: r["shape"] for r in records}
    assert shapes["conv1_preact"] == [32, 28, 28] and shapes["conv2_postpool"] == [64, 7, 7]


def test_step0_checkpoint_reproduces_weights_from_seed(tmp_path, data_dir):
    a = train_segment(settings(), data_dir, 0, tmp_path / "a.pt")
    b = train_segment(settings(), data_dir, 0, tmp_path / "b.pt")
    c = train_segment({**settings(), "seed": 4}, data_dir, 0, tmp_path / "c.pt")
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k])
    assert not torch.equal(a["state_dict"]["conv1_preact.weight"], c["state_dict"]["conv1_preact.weight"])
    # TF initialisation: truncated normal within two std of 0.1, conv1 bias 0, others 0.1
    w = a["state_dict"]["fc1_preact.weight"]
    assert w.abs().max() <= 0.2 and 0.08 < w.std() < 0.1
    assert torch.all(a["state_dict"]["conv1_preact.bias"] == 0) and torch.all(a["state_dict"]["logits.bias"] == 0.1)


def test_segments_equal_uninterrupted_training_bit_for_bit(tmp_path, data_dir):
    s = settings()
    train_segment(s, data_dir, 0, tmp_path / "s0.pt")
    # 10 steps per epoch: 0 -> 7 -> 15 crosses an epoch boundary mid-segment
    train_segment(s, data_dir, 7, tmp_path / "s7.pt", start=tmp_path / "s0.pt")
    split = train_segment(s, data_dir, 15, tmp_path / "s15.pt", start=tmp_path / "s7.pt")
    whole = train_segment(s, data_dir, 15, tmp_path / "w15.pt", start=tmp_path / "s0.pt")
    assert split["step"] == whole["step"] == 15
    for k in whole["state_dict"]:
        assert torch.equal(split["state_dict"][k], whole["state_dict"][k]), k
    assert split["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01 * 0.95)
    scratch = train_segment(s, data_dir, 15, tmp_path / "x15.pt")  # no checkpoint: from initialisation
    for k in whole["state_dict"]:
        assert torch.equal(scratch["state_dict"][k], whole["state_dict"][k]), k
    assert whole["history"][-1]["val_acc"] > 0.5  # 15 steps of SGD already beat chance by far


def test_resume_point_is_the_latest_compatible_checkpoint_before_the_target(tmp_path, data_dir):
    s = settings()
    for step in (0, 7, 15):
        train_segment(s, data_dir, step, tmp_path / f"step{step}.pt")
    assert latest_checkpoint(tmp_path, s, 12) == tmp_path / "step7.pt"
    assert latest_checkpoint(tmp_path, s, 7) == tmp_path / "step0.pt"  # strictly before the target
    assert latest_checkpoint(tmp_path, s, 0) is None
    # other settings (a new learning rate or seed) or a damaged file: never resumed from
    assert latest_checkpoint(tmp_path, settings(lr=0.1), 20) is None
    assert latest_checkpoint(tmp_path, {**s, "seed": 1}, 20) is None
    (tmp_path / "step15.pt").write_bytes(b"garbage")
    assert latest_checkpoint(tmp_path, s, 20) == tmp_path / "step7.pt"


def test_checkpoint_checks(tmp_path, data_dir):
    s = settings()
    train_segment(s, data_dir, 0, tmp_path / "s0.pt")
    with pytest.raises(CheckpointError, match="experiment is 't', expected 'other'"):
        load_checkpoint(tmp_path / "s0.pt", {**s, "experiment": "other"})
    with pytest.raises(CheckpointError, match="model fingerprint"):
        load_checkpoint(tmp_path / "s0.pt", {**s, "model": {**CONVNET, "kwargs": {"fc_units": 256}}})
    with pytest.raises(CheckpointError, match="other train settings"):
        train_segment(settings(lr=0.1), data_dir, 5, tmp_path / "x.pt", start=tmp_path / "s0.pt")
    (tmp_path / "bad.pt").write_bytes((tmp_path / "s0.pt").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'bad.pt'}: unreadable"):
        load_checkpoint(tmp_path / "bad.pt")
    # one flipped byte inside a weight tensor: torch loads it without complaint, the digest does not
    raw = bytearray((tmp_path / "s0.pt").read_bytes())
    with zipfile.ZipFile(tmp_path / "s0.pt") as z:
        entry = max(z.infolist(), key=lambda i: i.file_size)  # the largest tensor's storage
    name_len, extra_len = struct.unpack("<HH", raw[entry.header_offset + 26 : entry.header_offset + 30])
    raw[entry.header_offset + 30 + name_len + extra_len + entry.file_size // 2] ^= 0x01  # mid-data
    (tmp_path / "flipped.pt").write_bytes(raw)
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'flipped.pt'}: damaged: its tensors do not match"):
        load_checkpoint(tmp_path / "flipped.pt")
    with pytest.raises(ValueError, match="beyond the end of training"):
        train_segment(s, data_dir, 21, tmp_path / "y.pt", start=tmp_path / "s0.pt")


def test_a_diverging_training_is_an_error_of_its_job_and_leaves_no_checkpoint(tmp_path, data_dir):
    # lr 1e8: the objective becomes NaN; its probes said "converged: True" at chance level, exit code 0
    mlp = {"factory": "probes.models:DeepMLP", "kwargs": {"depth": 3, "width": 16, "n_in": 784, "n_classes": 10}}
    with pytest.raises(
        TrainingError,
        match=r"t r0: the training objective became (nan|inf) at step \d+ .* lower train.lr \(now 1e\+08\)",
    ):
        train_segment({**settings(lr=1e8, optimizer="sgd"), "model": mlp}, data_dir, 20, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
