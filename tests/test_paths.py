"""Paths with spaces: every rule's shell command quotes the paths it passes."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml
from conftest import REPO, mnist_source, snakemake


def spaced_config() -> dict:
    """The tiny config cut to two quick experiments that between them run every default rule:
    the data rule (from ``mnist.local_dir``), training, extraction, warm-started probes,
    tables, a figure and an animation."""
    config = yaml.safe_load((REPO / "workflow/config/tiny.yaml").read_text())
    untrained, plain = config["experiments"]["tiny_untrained_mlp"], config["experiments"]["tiny_mlp_plain"]
    untrained.update(repeats=1)
    untrained["probe"].update(points_per_job=5)  # one job per experiment and checkpoint: 17 jobs in all
    plain.update(points=["input", "layer3"])
    plain["probe"].update(warm_start=True, points_per_job=2)
    config.update(
        results="res ults",
        data_dir="da ta",
        experiments={"tiny_untrained_mlp": untrained, "tiny_mlp_plain": plain},
        figures={"figure3_tiny": config["figures"]["figure3_tiny"]},
        animations={"tiny_mlp_plain_error": {"experiment": "tiny_mlp_plain", "metric": "test_error", "fps": 2,
                                             "caption": "c"}},
    )  # fmt: skip
    return config


def test_paths_with_spaces_run_through_every_rule(tmp_path):
    source = mnist_source()
    if source is None:
        pytest.skip("needs a local MNIST copy for mnist.local_dir")
    work = tmp_path / "work dir"
    local = work / "mnist copy" / "dir"
    shutil.copytree(source, local)
    config = spaced_config()
    config.setdefault("data", {}).setdefault("mnist", {}).update(local_dir="mnist copy/dir", npm_package=None)
    work.mkdir(exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(work, "--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    results = work / "res ults"
    for path in ("tiny_untrained_mlp/probes.csv", "tiny_mlp_plain/probes.csv", "tiny_mlp_plain/model.csv",
                 "figures/figure3_tiny.png", "figures/figure3_tiny.pdf", "animations/tiny_mlp_plain_error.gif",
                 "tiny_mlp_plain/r0/probes/step20/input-layer3.npz"):  # fmt: skip
        assert (results / path).stat().st_size > 0, path
    assert sorted(p.name for p in (work / "da ta/mnist").iterdir()) == sorted(p.name[:-3] for p in source.glob("*.gz"))
    assert "warm" in (results / "tiny_mlp_plain/probes.csv").read_text()  # the --warm-start path was passed
    assert sorted(p.name for p in work.iterdir()) == [".snakemake", "config.yaml", "da ta", "mnist copy", "res ults"]


@pytest.mark.slow
def test_benchmark_rule_quotes_its_paths(tmp_path):
    """The benchmark rule (not in the default target, hours to run): its command as a dry run prints it,
    with the shell's own word splitting shown by printf."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["results"] = "res ults"
    work = tmp_path / "work dir"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(work, "--dry-run", "--printshellcmds", "probe_benchmark")
    assert dry.returncode == 0, dry.stderr[-3000:]
    [cmd] = [line.split("python ", 1)[1] for line in dry.stdout.splitlines() if "probe_benchmark.py --" in line]
    redirect = " > 'res ults/logs/probe_benchmark.log' 2>&1"
    assert cmd.endswith(redirect), cmd
    printed = subprocess.run(["bash", "-c", "printf '%s\\n' " + cmd.removesuffix(redirect)], capture_output=True,
                             text=True, check=True, cwd=work)  # fmt: skip
    words = printed.stdout.splitlines()
    assert words[0] == str(REPO / "benchmarks/probe_benchmark.py")
    assert words[words.index("--out") + 1] == "res ults/probe_benchmark"
    cases = [words[i + 1] for i, w in enumerate(words) if w == "--case"]
    assert "convnet_init/fc1_postact=res ults/mnist_convnet/r0/activations/step0.h5:fc1_postact" in cases
