"""Probing someone else's training: a model by import path, a directory of its checkpoints in the
formats training scripts write, identified by content for what reruns."""

from __future__ import annotations

import csv
import inspect
import os
import re
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import snakemake
from torch import nn

from probes.checkpoints import CheckpointError, load_weights
from probes.external import content_digest, find_checkpoints


class Net(nn.Module):
    def __init__(self, width=8, n_in=6, n_classes=2):
        super().__init__()
        self.fc1 = nn.Linear(n_in, width)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(width, n_classes)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


# the same model as a user's file, which the workflow imports by path
NET = f"from torch import nn\n\n\n{inspect.getsource(Net)}\n\ndef build(**kwargs):\n    return Net(**kwargs)\n"


def net() -> nn.Module:
    return Net()


@pytest.mark.parametrize("fmt", ["plain", "state_dict", "model", "model_state_dict", "lightning", "module"])
def test_each_common_checkpoint_format_loads(tmp_path, fmt):
    torch.manual_seed(1)
    source = net()
    sd = source.state_dict()
    saved = {
        "plain": sd,
        "state_dict": {"state_dict": sd, "epoch": 3},
        "model": {"model": sd, "optimizer": {"lr": 0.1}},
        "model_state_dict": {"model_state_dict": sd, "step": 10},
        "lightning": {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "pytorch-lightning_version": "2.4"},
        "module": source,
    }[fmt]
    torch.save(saved, tmp_path / "c.pt")
    target = net()
    load_weights(tmp_path / "c.pt", target)
    assert all(torch.equal(target.state_dict()[k], v) for k, v in sd.items())


def test_a_checkpoint_that_does_not_fit_names_keys_and_shapes(tmp_path):
    sd = net().state_dict()
    torch.save({"weights_of": 1, "opt": {}}, tmp_path / "nokey.pt")
    with pytest.raises(CheckpointError, match=r"nokey.pt: no state_dict found; its keys are \['opt', 'weights_of'\]"):
        load_weights(tmp_path / "nokey.pt", net())
    bad = {**{k: v for k, v in sd.items() if k != "fc2.bias"}, "head.weight": torch.zeros(2, 8)}
    bad["fc1.weight"] = torch.zeros(9, 6)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"does not fit the model Net: missing \['fc2.bias'\]; unexpected "
                                              r"\['head.weight'\]; shape mismatches \['fc1.weight: \(9, 6\) in the file, "
                                              r"\(8, 6\) in the model'\]"):  # fmt: skip
        load_weights(tmp_path / "bad.pt", net())
    (tmp_path / "cut.pt").write_bytes((tmp_path / "bad.pt").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cut.pt: unreadable checkpoint"):
        load_weights(tmp_path / "cut.pt", net())


def test_file_patterns_give_steps(tmp_path):
    for name in ("step0.pt", "step20.pt", "step100.pt", "step5.pt.tmp", "other.pt", "epoch=3-step=30.ckpt"):
        (tmp_path / name).write_bytes(b"x")
    assert {s: p.name for s, p in find_checkpoints(tmp_path, "step{step}.pt").items()} == {
        0: "step0.pt", 20: "step20.pt", 100: "step100.pt"}  # fmt: skip
    assert list(find_checkpoints(tmp_path, r"re:epoch=\d+-step=(?P<step>\d+)\.ckpt")) == [30]
    with pytest.raises(ValueError, match="expected one {step} field"):
        find_checkpoints(tmp_path, "ckpt.pt")
    with pytest.raises(ValueError, match="no such directory"):
        find_checkpoints(tmp_path / "nope", "step{step}.pt")


def test_content_digest_is_cached_by_size_and_mtime(tmp_path):
    f, cache = tmp_path / "a.pt", tmp_path / "cache.json"
    f.write_bytes(b"one")
    first = content_digest(f, cache)
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert content_digest(f, cache) == first  # touched: the same bytes
    f.write_bytes(b"two")
    assert content_digest(f, cache) != first


def save_checkpoints(directory: Path, steps, seed: int = 0) -> None:
    for step in steps:
        torch.manual_seed(seed + step)
        torch.save(net().state_dict(), directory / f"step{step}.pt")


def jobs(plan: str) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run plans."""
    out = []
    for block in plan.split("\nrule ")[1:]:
        rule = block.split(":")[0]
        wc = re.search(r"wildcards: (.*)", block)
        out.append((rule, wc[1] if wc else ""))
    return sorted(out)


@pytest.fixture
def external_run(tmp_path):
    """A workdir whose config probes a directory of checkpoints of a model defined in a file there."""
    (tmp_path / "mymodel.py").write_text(NET)
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    save_checkpoints(ckpts, (0, 10, 20))
    config = {
        "results": "results", "data_dir": "data", "keep_activations": False, "plot": {"dpi": 60},
        "experiments": {"ext": {
            "seed": 0, "repeats": 1,
            "dataset": {"name": "gaussian_separable", "dim": 6, "n_train": 300, "n_val": 100, "n_test": 100,
                        "split_seed": 0},
            "model": {"factory": "mymodel.py:build", "kwargs": {"width": 8}},
            "checkpoints": {"dir": "ckpts", "pattern": "step{step}.pt"},
            "points": ["input", "fc1", "act", "output"],
            "extract": {"batch_size": 100, "compression": None, "compression_level": 0, "shuffle": False, "dtype": "float32"},
            "probe": {"solver": "preconditioned_lbfgs", "Cs": [0.1, 1.0], "tol": 1e-5, "max_iter": 200,
                      "standardize": True, "patience": 1, "random_state": 0, "select_rows": 0,
                      "points_per_job": 1},
        }},
        "figures": {"ext_fig": {"experiment": "ext", "metric": "test_error", "steps": [0, "end"],
                                "panels": ["first", "last"], "caption": "External checkpoints."}},
        "animations": {},
    }  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(tmp_path, "--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    return tmp_path


@pytest.mark.slow
def test_external_checkpoints_rerun_by_content(external_run):
    work = external_run
    rows = list(csv.DictReader(open(work / "results/ext/probes.csv")))
    assert sorted({(int(r["step"]), r["point"]) for r in rows}) == [
        (s, p) for s in (0, 10, 20) for p in ("act", "fc1", "input", "output")]  # fmt: skip
    assert {r["width"] for r in rows if r["point"] in ("fc1", "act")} == {"8"}
    assert not any(work.glob("results/ext/r0/checkpoints/*")) and (work / "results/figures/ext_fig.png").exists()
    # touching a checkpoint reruns nothing
    os.utime(work / "ckpts/step10.pt")
    plan = snakemake(work, "-n")
    assert plan.returncode == 0 and "Nothing to be done" in plan.stdout + plan.stderr, plan.stdout[-2000:]
    # replacing one reruns its extraction and probes (and the table and figure drawn from them) only
    save_checkpoints(work / "ckpts", (10,), seed=100)
    plan = snakemake(work, "-n")
    planned = jobs(plan.stdout)
    assert [j for j in planned if j[0] in ("extract", "probe")] == [
        ("extract", "experiment=ext, repeat=0, step=10"),
        *[("probe", f"experiment=ext, repeat=0, step=10, job={p}") for p in ("act", "fc1", "input", "output")],
    ]  # fmt: skip
    assert {j[0] for j in planned} == {"extract", "probe", "aggregate", "figure", "all"}
    # a new file adds only its own jobs
    save_checkpoints(work / "ckpts", (10,), seed=0)  # back as it was
    save_checkpoints(work / "ckpts", (30,))
    planned = jobs(snakemake(work, "-n").stdout)
    assert [j for j in planned if j[0] in ("extract", "probe")] == [
        ("extract", "experiment=ext, repeat=0, step=30"),
        *[("probe", f"experiment=ext, repeat=0, step=30, job={p}") for p in ("act", "fc1", "input", "output")],
    ]  # fmt: skip


@pytest.mark.slow
def test_watch_probes_each_checkpoint_as_a_training_writes_it(external_run):
    import threading

    from conftest import REPO

    from probes.watch import watch

    work = external_run
    for f in (work / "ckpts").iterdir():
        f.unlink()
    (work / "ckpts" / "step0.pt").write_bytes(b"")  # nothing there yet: an empty file being opened
    torch.manual_seed(5)
    blob = {}
    for step in (0, 10, 20):
        torch.save(net().state_dict(), work / "blob.pt")
        blob[step] = (work / "blob.pt").read_bytes()

    def training() -> None:  # writes as a training script would: in place, in pieces, over time
        for step in (0, 10, 20):
            path = work / "ckpts" / f"step{step}.pt"
            with open(path, "wb") as f:
                f.write(blob[step][: len(blob[step]) // 2])
                f.flush()
                time.sleep(2.5)  # half written across polls: must be skipped, not probed
                f.write(blob[step][len(blob[step]) // 2 :])
            time.sleep(1.5)

    writer = threading.Thread(target=training)
    writer.start()
    code = watch(work / "config.yaml", REPO / "Snakefile", work, interval=0.5, cores=2, idle_exit=12)
    writer.join()
    assert code == 0, (work / "results/logs/watch.log").read_text()[-3000:]
    rows = list(csv.DictReader(open(work / "results/ext/probes.csv")))
    assert sorted({int(r["step"]) for r in rows}) == [0, 10, 20]
    log = (work / "results/logs/watch.log").read_text()
    assert "unreadable checkpoint" not in log and log.count("Building DAG of jobs") >= 2  # ran as they came
