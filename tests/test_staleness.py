"""What reruns when a setting changes: real ``snakemake --dry-run`` on a completed tiny run.

Each case writes a changed copy of the run's config, asks Snakemake what it would
run, and asserts the exact set of jobs. The completed run itself is never touched.
"""

import copy
import csv
import os
import re
import shutil
from pathlib import Path

import yaml
from conftest import REPO, snakemake

from probes.config import Experiment

JOB = re.compile(
    r"^(?:local)?rule (\w+):\n(?:[ \t]+.*\n)*?[ \t]+wildcards: (.*)$|^(?:local)?rule (all):$", re.MULTILINE
)


def scheduled(work: Path, config: dict, tmp_path: Path, env: dict | None = None) -> set[tuple[str, str]]:
    """The jobs (rule, wildcards) a dry run with ``config`` would run in ``work``."""
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    run = snakemake(work, "--dry-run", "--configfile", str(changed), env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = {(m[1] or m[3], m[2] or "") for m in JOB.finditer(run.stdout)}
    if not jobs:
        assert "Nothing to be done" in run.stdout + run.stderr, run.stdout[-2000:]
    return jobs


def wc(**kw) -> str:
    return ", ".join(f"{k}={v}" for k, v in kw.items())


CONVNET_POINTS = ["input", "conv1_postpool", "conv2_postpool", "fc1_postact", "logits"]
CONVNET_FIGURES = {("figure", wc(figure="figure5_tiny")), ("all", "")}
CONVNET_AGGREGATE = {("aggregate", wc(experiment="tiny_convnet"))}


def probes(steps, points, experiment="tiny_convnet"):
    return {("probe", wc(experiment=experiment, repeat=0, step=s, job=p)) for s in steps for p in points}


def test_nothing_changed_nothing_runs(tiny_run, tmp_path):
    work, config = tiny_run
    assert scheduled(work, config, tmp_path) == set()
    # how often training saves resume snapshots changes no result: nothing reruns either
    assert scheduled(work, {**config, "snapshot_minutes": 3}, tmp_path) == set()
    # nor where training, extraction and the probe solver run
    assert scheduled(work, {**config, "device": "auto"}, tmp_path) == set()


def test_an_experiments_probe_setting_reruns_its_probes_only(tiny_run, tmp_path):
    work, config = tiny_run
    c = copy.deepcopy(config)
    c["experiments"]["tiny_convnet"]["probe"]["Cs"] = [1.0e-2, 1.0e-1, 1.0]
    assert scheduled(work, c, tmp_path) == probes((0, 32), CONVNET_POINTS) | CONVNET_AGGREGATE | CONVNET_FIGURES


def test_one_points_probe_override_reruns_that_points_probes_only(tiny_run, tmp_path):
    work, config = tiny_run
    c = copy.deepcopy(config)
    c["experiments"]["tiny_convnet"]["probe"]["overrides"] = {"fc1_postact": {"tol": 1.0e-6}}
    assert scheduled(work, c, tmp_path) == probes((0, 32), ["fc1_postact"]) | CONVNET_AGGREGATE | CONVNET_FIGURES


def test_a_new_checkpoint_trains_extracts_and_probes_only_that_step(tiny_run, tmp_path):
    work, config = tiny_run
    c = copy.deepcopy(config)
    c["experiments"]["tiny_convnet"]["checkpoints"] = {"steps": [0, 16, "end"]}
    new = {("train", wc(experiment="tiny_convnet", repeat=0, step=16)),
           ("extract", wc(experiment="tiny_convnet", repeat=0, step=16))}  # fmt: skip
    assert scheduled(work, c, tmp_path) == new | probes((16,), CONVNET_POINTS) | CONVNET_AGGREGATE | CONVNET_FIGURES


def test_a_training_setting_reruns_that_experiments_chain_only(tiny_run, tmp_path):
    work, config = tiny_run
    c = copy.deepcopy(config)
    c["experiments"]["tiny_convnet"]["train"]["lr"] = 0.02
    chain = {(rule, wc(experiment="tiny_convnet", repeat=0, step=s)) for rule in ("train", "extract") for s in (0, 32)}
    assert scheduled(work, c, tmp_path) == chain | probes((0, 32), CONVNET_POINTS) | CONVNET_AGGREGATE | CONVNET_FIGURES


def test_a_plot_setting_redraws_figures_only(tiny_run, tmp_path):
    work, config = tiny_run
    c = copy.deepcopy(config)
    c["plot"]["dpi"] = 90
    assert scheduled(work, c, tmp_path) == {("figure", wc(figure=f)) for f in config["figures"]} | {("all", "")}


def test_changed_probe_code_reruns_every_probe_and_nothing_upstream(tiny_run, tmp_path):
    """The probe rule's params carry a digest of the probe code, solver.py included (comments and docstrings aside)."""
    work, config = tiny_run
    src = tmp_path / "src"
    shutil.copytree(REPO / "src", src)
    code = (src / "probes/solver.py").read_text()
    (src / "probes/solver.py").write_text(code.replace("BLOCK_BYTES = 4 << 20", "BLOCK_BYTES = 8 << 20", 1))
    jobs = scheduled(work, config, tmp_path, env={**os.environ, "PYTHONPATH": str(src)})
    every_probe = set()
    for name in config["experiments"]:
        exp = Experiment(name, config)
        every_probe |= {("probe", wc(experiment=name, repeat=r, step=s, job=j))
                        for r in exp.repeats for s in exp.steps for j in exp.probe_jobs}  # fmt: skip
    assert {j for j in jobs if j[0] == "probe"} == every_probe
    assert {rule for rule, _ in jobs} == {"probe", "aggregate", "figure", "animation", "all"}


def test_a_probe_unchanged_since_the_first_checkpoint_is_reused_not_fitted_again(tiny_run, tmp_path):
    """The input is the same at every checkpoint: each later probe job reads the same job's weights
    at the first checkpoint (``--reuse-from``) and reuses its probe; every other point is fitted."""
    work, config = tiny_run
    rows = list(csv.DictReader((work / "results/tiny_convnet/probes.csv").read_text().splitlines()))
    start = {(int(r["step"]), r["point"]): r["start"] for r in rows}
    assert start == {**{(0, p): "cold" for p in CONVNET_POINTS}, **{(32, p): "cold" for p in CONVNET_POINTS[1:]},
                     (32, "input"): "reused"}  # fmt: skip
    first = {r["point"]: r for r in rows if r["step"] == "0"}
    for r in rows:
        if r["start"] == "reused":
            assert r["n_iter"] == "0" and all(r[k] == first[r["point"]][k] for k in ("C", "val_error", "test_error"))
    c = copy.deepcopy(config)
    c["experiments"]["tiny_convnet"]["probe"]["Cs"] = [1.0e-2, 1.0e-1, 1.0]  # every probe job scheduled
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(c))
    run = snakemake(work, "--dry-run", "--printshellcmds", "--configfile", str(tmp_path / "changed.yaml"))
    commands = [line for line in run.stdout.splitlines() if "probes fit" in line]
    for point in CONVNET_POINTS:
        (at32,) = [cmd for cmd in commands if f"step32/{point}.json" in cmd]
        assert f"--reuse-from results/tiny_convnet/r0/probes/step0/{point}.npz" in at32
        (at0,) = [cmd for cmd in commands if f"step0/{point}.json" in cmd]
        assert "--reuse-from" not in at0 and "--warm-start" not in at0


def test_warm_start_chains_each_probe_job_to_the_same_job_at_the_previous_checkpoint(tiny_run, tmp_path):
    work, config = tiny_run
    c = copy.deepcopy(config)
    c["experiments"]["tiny_convnet"]["probe"]["warm_start"] = True
    assert scheduled(work, c, tmp_path) == probes((0, 32), CONVNET_POINTS) | CONVNET_AGGREGATE | CONVNET_FIGURES
    run = snakemake(work, "--dry-run", "--printshellcmds", "--configfile", str(tmp_path / "changed.yaml"))
    commands = [line for line in run.stdout.splitlines() if "probes fit" in line]
    assert len(commands) == 2 * len(CONVNET_POINTS)
    for point in CONVNET_POINTS:  # step 32 starts from step 0's weights; step 0, the first, cold
        (at32,) = [cmd for cmd in commands if f"step32/{point}.json" in cmd]
        assert f"--warm-start results/tiny_convnet/r0/probes/step0/{point}.npz" in at32
        (at0,) = [cmd for cmd in commands if f"step0/{point}.json" in cmd]
        assert "--warm-start" not in at0
