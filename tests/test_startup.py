"""What the workflow says at start-up about a mistake in its config or its targets: one sentence
naming the file, key or name and what was expected, before any job runs (``snakemake -n``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO, snakemake


@pytest.fixture
def work(tmp_path) -> Path:
    """A directory with the default config.yaml."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    return tmp_path


def refused(run, message: str) -> None:
    """The run stopped at start-up with ``message`` on a line of its own, and no traceback."""
    out = run.stdout + run.stderr  # Snakemake prints a start-up error to either
    assert run.returncode != 0
    assert message in out.splitlines(), out[-3000:]
    assert "Traceback" not in out and "required property" not in out, out[-3000:]


def test_a_misspelt_experiment_in_an_overlay_is_named(work):
    overlay = work / "quick.yaml"
    overlay.write_text((REPO / "workflow/config/quick.yaml").read_text().replace("  mlp128_aux:", "  mlp128_axu:"))
    known = ", ".join(sorted(yaml.safe_load((REPO / "config.yaml").read_text())["experiments"]))
    refused(
        snakemake(work, "-n", "--configfile", str(overlay)),
        f"{overlay}: unknown experiment 'mlp128_axu'; known: {known}",
    )


def test_overlays_merge_onto_the_base(work):
    run = snakemake(
        work, "-n", "results/quick/mnist_convnet/probes.csv", "--configfile", str(REPO / "workflow/config/quick.yaml")
    )
    assert run.returncode == 0, run.stderr[-3000:]
