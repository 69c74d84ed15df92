"""Which configuration a command line runs, by dry runs: ``--configfile`` names the whole
configuration (the tiny first run plans only its own jobs), config.yaml is read when none is
named, and an overlay applies onto config.yaml when that is named first."""

import re
import shutil

import pytest
import yaml
from conftest import REPO, snakemake

pytestmark = pytest.mark.slow  # each runs snakemake -n (6-8 s)

WILDCARD = re.compile(r"\b(experiment|figure|animation)=([A-Za-z0-9_-]+)")
OUTPUT = re.compile(r"^\s+output: (.*)$", re.MULTILINE)


def planned(work, *args) -> tuple[dict[str, set[str]], list[str]]:
    """The experiments, figures and animations a dry run in ``work`` would make, and its outputs."""
    run = snakemake(work, "--dry-run", *args)
    assert run.returncode == 0, run.stderr[-3000:]
    names: dict[str, set[str]] = {"experiment": set(), "figure": set(), "animation": set()}
    for kind, name in WILDCARD.findall(run.stdout):
        names[kind].add(name)
    outputs = [f.strip() for line in OUTPUT.findall(run.stdout) for f in line.split(",")]
    return names, outputs


def test_the_tiny_config_plans_only_its_own_jobs(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")  # present, and not read
    tiny = yaml.safe_load((REPO / "workflow/config/tiny.yaml").read_text())
    names, outputs = planned(tmp_path, "--configfile", str(REPO / "workflow/config/tiny.yaml"))
    assert names == {"experiment": set(tiny["experiments"]), "figure": set(tiny["figures"]),
                     "animation": set(tiny["animations"])}  # fmt: skip
    assert outputs and all(f.startswith(("results/tiny/", "data/mnist/")) for f in outputs), outputs


def test_without_a_configfile_config_yaml_runs_the_paper(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    paper = yaml.safe_load((REPO / "config.yaml").read_text())
    names, _ = planned(tmp_path)
    assert names["experiment"] == set(paper["experiments"]) and names["figure"] == set(paper["figures"])


def test_an_overlay_applies_onto_config_yaml_named_first_and_alone_is_refused(tmp_path):
    quick = str(REPO / "workflow/config/quick.yaml")
    names, outputs = planned(tmp_path, "--configfile", str(REPO / "config.yaml"), quick)
    assert names["experiment"] == set(yaml.safe_load((REPO / "config.yaml").read_text())["experiments"])
    assert all(f.startswith(("results/quick/", "data/mnist/")) for f in outputs), outputs
    alone = snakemake(tmp_path, "--dry-run", "--configfile", quick)
    assert alone.returncode != 0
    said = alone.stdout + alone.stderr
    assert "not a whole configuration" in said and f"--configfile config.yaml {quick}" in said, said[-2000:]
