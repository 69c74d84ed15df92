"""The README's "Probe your own model" example in miniature: the plain training script writes
checkpoints of the small ResNet, and the workflow probes them through examples/config.yaml."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, snakemake

FASHION = Path(os.environ.get("PROBES_FASHION_MNIST_DIR", REPO.parent / "shared" / "data" / "fashion-mnist"))


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason=f"no local Fashion-MNIST copy at {FASHION}")
def test_the_example_trains_elsewhere_and_its_checkpoints_are_probed(tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    train = subprocess.run(
        [sys.executable, "examples/train_fashion_mnist.py", "--data", str(FASHION), "--out", "examples/run/ckpts",
         "--steps", "20", "--every", "10", "--width", "4", "--batch-size", "32"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "examples/run/ckpts").iterdir()) == ["step0.pt", "step10.pt", "step20.pt"]
    config = yaml.safe_load((REPO / "examples/config.yaml").read_text())
    spec = config["experiments"]["small_resnet"]
    spec["model"]["kwargs"]["width"] = 4
    spec["dataset"].update(n_train=600, n_val=200, n_test=200)
    config["data"]["fashion_mnist"] = {"local_dir": str(FASHION), "mirrors": []}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(tmp_path, "--cores", "2", "--configfile", str(tmp_path / "tiny.yaml"))
    assert run.returncode == 0, run.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "results/example/small_resnet/probes.csv")))
    points = ["input", "stem", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "fc"]
    assert [(int(r["step"]), r["point"]) for r in rows] == [(s, p) for s in (0, 10, 20) for p in points]
    widths = {r["point"]: int(r["width"]) for r in rows}
    assert widths == {"input": 784, "stem": 4, "layer1.0": 4, "layer1.1": 4, "layer2.0": 8, "layer2.1": 8, "fc": 10}
    assert all(0 <= float(r["test_error"]) <= 1 for r in rows)
    for out in ("figures/small_resnet.png", "animations/small_resnet_test_error.gif"):
        assert (tmp_path / "results/example" / out).stat().st_size > 5000
