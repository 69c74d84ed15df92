"""The real workflow through Snakemake on a tiny config: outputs, sanity, and a no-op rerun."""

import csv
import itertools
import json
import re

import pytest
import yaml
from conftest import snakemake, tiny_config


def test_every_output_exists_with_sane_values(tiny_run):
    work, config = tiny_run
    exp = config["experiments"]["tiny_convnet"]
    rows = list(csv.DictReader(open(work / "results/tiny_convnet/probes.csv")))
    assert [(int(r["step"]), r["point"]) for r in rows] == [(s, p) for s in (0, 32) for p in exp["points"]]
    for r in rows:
        assert 0 <= float(r["train_error"]) <= float(r["test_error"]) + 0.2 and float(r["test_error"]) < 0.6
        grid = exp["probe"]["Cs"]  # or up to three decades past its ends (the walk goes on while it improves)
        assert min(grid) / 1e3 <= float(r["C"]) <= max(grid) * 1e3 and r["converged"] in ("True", "False")
        assert r["status"] in ("ok", "C_limit") and (r["C_limit"] == "") == (r["status"] == "ok")
    err = {(int(r["step"]), r["point"]): float(r["test_error"]) for r in rows}
    assert err[(0, "input")] < 0.2  # pixels are nearly linearly separable (paper: ~8% on 50k images)
    assert err[(32, "logits")] < err[(0, "logits")]  # training helps the last layer
    model = list(csv.DictReader(open(work / "results/tiny_convnet/model.csv")))
    assert [int(m["step"]) for m in model] == [0, 32] and float(model[1]["test_acc"]) > 0.5
    [probe] = json.loads((work / "results/tiny_convnet/r0/probes/step32/fc1_postact.json").read_text())
    assert probe["width"] == 512 and len(probe["path"]) >= 3  # the whole grid (patience: null), and any extension
    for fig in ("figure5_tiny", "figure3_tiny", "figure3_norms_tiny", "figure8_tiny"):
        for ext in ("png", "pdf"):
            assert (work / f"results/figures/{fig}.{ext}").stat().st_size > 5000
    assert "epoch 1 step 32" in (work / "results/logs/train/tiny_convnet/r0/step32.log").read_text()
    assert not list(work.rglob("*.part*"))  # no temporary file left behind


def test_untrained_mlp_repeats_degrade_with_depth(tiny_run):
    work, config = tiny_run
    rows = list(csv.DictReader(open(work / "results/tiny_untrained_mlp/probes.csv")))
    depth = config["experiments"]["tiny_untrained_mlp"]["model"]["kwargs"]["depth"]
    assert {(int(r["repeat"]), int(r["layer_index"])) for r in rows} == {
        (r, i) for r in (0, 1) for i in range(depth + 1)
    }
    assert all(int(r["step"]) == 0 for r in rows)  # never trained: one checkpoint, at initialisation
    for rep in ("0", "1"):
        err = [float(r["test_error"]) for r in rows if r["repeat"] == rep]
        assert err[0] < 0.05 and err[-1] > err[0] + 0.05  # separable input, degraded deep layer
        assert all(float(r["activation_norm"]) > 0.1 for r in rows)  # no numerical underflow
    # repeats draw new data and networks (their errors may coincide: 45 of 200 test rows, say)
    assert len({r["activation_norm"] for r in rows if r["point"] == "layer4"}) == 2
    # points_per_job 3: each checkpoint's 5 probes are fitted by two jobs
    jobs = sorted(p.name for p in (work / "results/tiny_untrained_mlp/r1/probes/step0").glob("*.json"))
    assert jobs == ["input-layer2.json", "layer3-layer4.json"]


@pytest.mark.parametrize("name", ["tiny_mlp_aux", "tiny_mlp_skip", "tiny_mlp_plain"])
def test_deep_mlps_train_probe_every_layer_at_every_checkpoint(tiny_run, name):
    work, config = tiny_run
    rows = list(csv.DictReader(open(work / f"results/{name}/probes.csv")))
    depth = config["experiments"][name]["model"]["kwargs"]["depth"]
    assert sorted({int(r["step"]) for r in rows}) == [0, 5, 20] and len(rows) == 3 * (depth + 1)
    model = list(csv.DictReader(open(work / f"results/{name}/model.csv")))
    assert [int(m["step"]) for m in model] == [0, 5, 20]
    if name != "tiny_mlp_plain":  # the control may or may not learn at this size; the others must
        assert float(model[-1]["train_loss"]) < float(model[0]["train_loss"])
    # points_per_job 7: one probe job per checkpoint
    assert sorted(p.name for p in (work / f"results/{name}/r0/probes/step5").glob("*.json")) == ["input-layer6.json"]


def test_animation_has_a_frame_per_checkpoint(tiny_run):
    work, _ = tiny_run
    from PIL import Image

    with Image.open(work / "results/animations/tiny_mlp_aux_train_error.gif") as im:
        assert im.n_frames == 3


def test_second_run_is_a_no_op(tiny_run):
    work, _ = tiny_run
    dry = snakemake(work, "--cores", "2", "--dry-run")
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr


def test_html_report_holds_figure_tables_and_captions(tiny_run):
    work, config = tiny_run
    run = snakemake(work, "--report", "results/report.html")
    assert run.returncode == 0, run.stderr[-3000:]
    html = (work / "results/report.html").read_text()
    for text in ("figure5_tiny.png", "figure3_norms_tiny.png", "tiny_mlp_aux_train_error.gif", "probes.csv",
                 "model.csv", config["figures"]["figure5_tiny"]["caption"],
                 config["animations"]["tiny_mlp_aux_train_error"]["caption"], "Experiments",
                 "1 epoch of 32 minibatches of 64", "scikit-learn's LogisticRegression (solver=lbfgs)",
                 "never trained (train.epochs 0)"):  # fmt: skip
        assert text in html, text


@pytest.mark.slow
def test_dense_checkpoints_train_in_order_and_chain_warm_started_probes(tmp_path):
    """The videos' setting in miniature: six checkpoints, one core, warm starts. Each training job
    resumes from the checkpoint just before it (trained first), checkpoints are extracted in step
    order (a later one first would wait on disk for its probes' warm starts), each probe job after
    the first starts from the previous checkpoint's, and the unchanged input's probe is reused."""
    config = tiny_config()
    exp = config["experiments"]["tiny_mlp_aux"]
    exp.update(checkpoints={"every_steps": 4}, points=["input", "layer3"])
    exp["probe"].update(warm_start=True, points_per_job=1)
    config.update(experiments={"tiny_mlp_aux": exp}, figures={}, animations={}, keep_activations=False)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(tmp_path, "--cores", "1")
    assert run.returncode == 0, run.stderr[-3000:]
    steps = (0, 4, 8, 12, 16, 20)
    logs = tmp_path / "results/logs/train/tiny_mlp_aux/r0"
    for prev, step in itertools.pairwise(steps):
        first = (logs / f"step{step}.log").read_text().splitlines()[0]
        assert first.endswith(f"resuming from results/tiny_mlp_aux/r0/checkpoints/step{prev}.pt"), first
    extracted = re.findall(r"rule extract:\n(?:    .*\n)*?    wildcards: .*step=(\d+)", run.stderr)
    assert extracted == [str(s) for s in steps], extracted
    rows = list(csv.DictReader((tmp_path / "results/tiny_mlp_aux/probes.csv").read_text().splitlines()))
    start = {(int(r["step"]), r["point"]): r["start"] for r in rows}
    assert start == {**{(s, "input"): "reused" for s in steps[1:]}, **{(s, "layer3"): "warm" for s in steps[1:]},
                     (0, "input"): "cold", (0, "layer3"): "cold"}  # fmt: skip
    assert not list((tmp_path / "results/tiny_mlp_aux/r0/activations").glob("*.h5"))  # all probed and deleted
