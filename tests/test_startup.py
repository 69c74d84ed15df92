"""What the workflow says at start-up about a mistake in its config or its targets: one sentence
naming the file, key or name and what was expected, before any job runs (``snakemake -n``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO, snakemake

pytestmark = pytest.mark.slow  # each runs snakemake -n (2-8 s)


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
        snakemake(work, "-n", "--configfile", str(work / "config.yaml"), str(overlay)),
        f"{overlay}: unknown experiment 'mlp128_axu'; known: {known}",
    )


def test_overlays_merge_onto_the_base(work):
    run = snakemake(
        work,
        "-n",
        "results/quick/mnist_convnet/probes.csv",
        "--configfile",
        str(work / "config.yaml"),
        str(REPO / "workflow/config/quick.yaml"),
    )
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.mark.parametrize(
    "target, message",
    [
        ("results/figures/figure55.png", "no figure 'figure55' in the config; its figures are figure3, figure3_norms,"),
        ("results/mlp128_axu/probes.csv", "no experiment 'mlp128_axu' in the config; its experiments are mnist_convnet,"),
        ("results/animations/mlp128_aux.gif", "no animation 'mlp128_aux' in the config; its animations are"),
        ("results/mnist_convnet/r0/checkpoints/step7.pt",
         "step 7 is not a checkpoint of mnist_convnet; experiments.mnist_convnet.checkpoints schedules steps 0, 7820"),
        ("results/mnist_convnet/r0/probes/step7/input.json", "step 7 is not a checkpoint of mnist_convnet;"),
        ("results/mnist_convnet/r1/checkpoints/step0.pt",
         "repeat 1 is not a repeat of mnist_convnet; its repeats are r0 (experiments.mnist_convnet.repeats = 1)"),
    ],
)  # fmt: skip
def test_a_mistyped_target_is_named_with_what_there_is(work, target, message):
    run = snakemake(work, "-n", target)
    out = run.stdout + run.stderr
    assert run.returncode != 0 and f"ValueError: {message}" in out, out[-3000:]  # nothing scheduled
    assert "KeyError" not in out


def test_a_yaml_syntax_error_in_config_yaml_is_named_by_line_and_column(work):
    lines = (work / "config.yaml").read_text().splitlines()
    n = lines.index("  fig3_untrained_mlp:")
    lines[n] += " [oops"  # an unclosed list, found where the next line's key begins
    (work / "config.yaml").write_text("\n".join(lines))
    column = lines[n + 1].index(":") + 1
    refused(
        snakemake(work, "-n"),
        f"config.yaml, line {n + 2}, column {column}: invalid YAML: expected ',' or ']', but got ':' "
        f"(while parsing a flow sequence at line {n + 1}, column {len('  fig3_untrained_mlp: ') + 1})",
    )


def test_a_yaml_syntax_error_in_an_overlay_is_left_to_snakemake(work):
    """Snakemake reads --configfile files before any of the workflow's code runs, and its message names
    no file: the README sends the user to probes check-config (tests/test_cli.py), which names the line."""
    (work / "bad.yaml").write_text("experiments:\n  mnist_convnet:\n    repeats: 2\n   seed: 1\n")
    run = snakemake(work, "-n", "--configfile", str(work / "bad.yaml"))
    assert run.returncode != 0 and "Config file is not valid JSON or YAML" in run.stdout + run.stderr
