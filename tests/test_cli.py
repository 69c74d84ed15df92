"""The ``probes`` command line as a user meets it: ``check-config`` from anywhere, its messages."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from snakemake.common.configfile import load_configfile
from snakemake.utils import update_config

from probes.cli import parser
from probes.configfiles import merge, read


def probes(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "probes.cli", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_check_config_works_from_another_directory(tmp_path):
    config = tmp_path / "my.yaml"
    shutil.copy(REPO / "config.yaml", config)
    run = probes("check-config", "my.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout == "my.yaml: valid\n"


def test_the_schema_ships_in_the_package_and_only_there(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    build = subprocess.run([*pip, "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("probes-*.whl")
    assert "probes/schema/config.schema.yaml" in zipfile.ZipFile(wheel).namelist()
    assert [p.relative_to(REPO).as_posix() for p in REPO.rglob("*.schema.yaml")] == [
        "src/probes/schema/config.schema.yaml"
    ]


def test_check_config_validates_overlays_merged_onto_their_base(tmp_path):
    run = probes("check-config", "--base", "config.yaml", "workflow/config/quick.yaml", "workflow/config/videos.yaml",
                 cwd=REPO)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout == "config.yaml + workflow/config/quick.yaml + workflow/config/videos.yaml: valid\n"
    alone = probes("check-config", "workflow/config/quick.yaml", cwd=REPO)
    assert alone.returncode == 1 and alone.stderr == (
        "workflow/config/quick.yaml: no dataset or model for experiments mnist_convnet, fig3_untrained_mlp, "
        "mlp128_plain and 2 more; if it is an overlay, check it on its base: "
        "probes check-config --base config.yaml workflow/config/quick.yaml\n"
    )


@pytest.mark.parametrize(
    "section, right, wrong",
    [("experiments", "mlp128_aux", "mlp128_axu"), ("figures", "figure3", "figure33")],
)
def test_a_misspelt_name_in_an_overlay_is_one_sentence(tmp_path, section, right, wrong):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text((REPO / "workflow/config/quick.yaml").read_text().replace(f"  {right}:", f"  {wrong}:"))
    run = probes("check-config", "--base", str(REPO / "config.yaml"), "overlay.yaml", cwd=tmp_path)
    known = ", ".join(sorted(yaml.safe_load((REPO / "config.yaml").read_text())[section]))
    assert run.returncode == 1
    assert run.stderr == f"overlay.yaml: unknown {section[:-1]} '{wrong}'; known: {known}\n"


def test_merge_is_snakemakes(tmp_path):
    files = [REPO / "config.yaml", REPO / "workflow/config/quick.yaml", REPO / "workflow/config/videos.yaml"]
    theirs: dict = {}
    for f in files:
        update_config(theirs, load_configfile(f))
    assert merge([read(f) for f in files]) == theirs
    assert merge([{"a": {"b": [1, 2], "c": 1}}, {"a": {"b": [3]}}, {"a": None}, {"a": {"d": 2}}]) == {"a": {"d": 2}}


def test_every_option_of_every_stage_is_documented():
    [stages] = [a.choices for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert sorted(stages) == [
        "aggregate",
        "animate",
        "check-config",
        "extract",
        "fetch",
        "fit",
        "layers",
        "plot",
        "status",
        "train",
        "watch",
    ]
    with_settings = set()
    for name, stage in stages.items():
        for action in stage._actions:
            assert action.help, f"probes {name} {action.dest}: no help"
            if action.dest == "settings":
                with_settings.add(name)
                assert "workflow's" in action.help and "config.schema.yaml" in action.help, name
                assert "snakemake -n -p" in action.help, name
    assert with_settings == {"train", "extract", "fit"}


def test_a_yaml_syntax_error_is_named_by_file_line_and_column(tmp_path):
    (tmp_path / "bad.yaml").write_text("experiments:\n  mnist_convnet:\n    repeats: 2\n   seed: 1\n")
    run = probes("check-config", "--base", str(REPO / "config.yaml"), "bad.yaml", cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr == (
        "bad.yaml, line 4, column 4: invalid YAML: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block mapping at line 2, column 3)\n"
    )


def test_check_config_resolved_prints_the_config_with_its_defaults(tmp_path):
    (tmp_path / "lean.yaml").write_text(
        "experiments:\n  e:\n    dataset: {name: gaussian_separable, dim: 4, n_train: 50, n_val: 20, n_test: 20}\n"
        "    model: {factory: 'probes.models:DeepMLP', kwargs: {depth: 2, width: 4, n_in: 4, n_classes: 2}}\n"
        "    train: {epochs: 0}\n    probe: {tol: 1.0e-4}\n"
    )
    run = probes("check-config", "--resolved", "lean.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    resolved = yaml.safe_load(run.stdout)
    probe = resolved["experiments"]["e"]["probe"]
    assert probe["tol"] == 1e-4 and probe["solver"] == "preconditioned_lbfgs" and probe["Cs"][0] == 1e-4
    assert resolved["results"] == "results" and resolved["experiments"]["e"]["checkpoints"] == {"steps": [0, "end"]}
    assert run.stdout.endswith("# lean.yaml: valid\n")


def test_layers_lists_the_points_of_an_experiment_whose_checkpoints_are_not_written_yet(tmp_path):
    """Points are chosen before a training writes its first checkpoint (the example's first step)."""
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("run"))
    run = probes("layers", "small_resnet", "--config", "examples/config.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    probed = [line.split()[1] for line in run.stdout.splitlines() if line.startswith("* ")]
    assert probed == ["input", "stem", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "fc"]
