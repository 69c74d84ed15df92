import copy
import inspect
import shutil
from pathlib import Path

import pytest

from probes.config import SCHEMA, ConfigError, Experiment, fill_defaults, load_yaml, validate
from probes.configfiles import merge, read
from probes.estimator import LinearProbe

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def config():
    """config.yaml with the schema's defaults filled in (as validation fills them)."""
    return fill_defaults(load_yaml(REPO / "config.yaml"), load_yaml(SCHEMA))


def check(config):
    return validate(config, SCHEMA, source="config.yaml")


def test_default_config_is_valid_and_reproduces_the_paper(config):
    check(config)
    exp = Experiment("mnist_convnet", config)
    assert exp.steps == (0, 7820)  # 10 epochs of ceil(50000 / 64) = 782 minibatches
    assert exp.points[0] == "input" and exp.points[-1] == "logits" and len(exp.points) == 10
    fig3 = Experiment("fig3_untrained_mlp", config)  # section 3.2
    assert fig3.steps == (0,) and len(fig3.repeats) == 100 and len(fig3.points) == 33
    assert set(fig3.widths.values()) == {128} and fig3.spec["model"]["kwargs"]["negative_slope"] == 0.5
    models = {}
    for name in ("mlp128_plain", "mlp128_aux", "mlp128_skip"):  # section 3.4
        mlp = Experiment(name, config)
        assert mlp.steps == (0, 500, 5000) and len(mlp.points) == 129 and mlp.widths["layer128"] == 128
        models[name] = (mlp.spec["model"]["kwargs"].get("aux_every", 0), mlp.spec["model"]["kwargs"].get("skip_to", 0))
    assert models == {"mlp128_plain": (0, 0), "mlp128_aux": (16, 0), "mlp128_skip": (0, 64)}
    assert check(load_yaml(REPO / "workflow/config/tiny.yaml"))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.update(colour="red"), r"\(top level\).*'colour' was unexpected"),
        (lambda c: c["experiments"]["mnist_convnet"]["train"].update(lr=-0.01),
         r"experiments\.mnist_convnet\.train\.lr = -0\.01: .*less than or equal to the minimum of 0"),
        (lambda c: c["experiments"]["mnist_convnet"]["train"].update(epochs="ten"),
         r"experiments\.mnist_convnet\.train\.epochs = 'ten': 'ten' is not of type 'integer'"),
        (lambda c: c["experiments"]["mnist_convnet"]["probe"].update(Cs=[]),
         r"experiments\.mnist_convnet\.probe\.Cs = \[\]: \[\] should be non-empty"),
        (lambda c: c["experiments"]["mnist_convnet"]["probe"].update(Cs=[0.1, 1.0, 0.1]),
         r"experiments\.mnist_convnet\.probe\.Cs = \[0\.1, 1\.0, 0\.1\]: .* has non-unique elements"),
        (lambda c: c["experiments"]["mnist_convnet"]["probe"]["overrides"].update(logits={"Cs": [1, 1.0]}),
         r"probe\.overrides\.logits\.Cs = \[1, 1\.0\]: .* has non-unique elements"),  # the same C twice
        (lambda c: c["experiments"]["mnist_convnet"]["probe"].update(solver="newton"),
         r"probe\.solver = 'newton': 'newton' is not one of \['lbfgs', 'sag', 'saga', 'sklearnex', 'preconditioned_lbfgs'\]"),
        (lambda c: c["experiments"]["mnist_convnet"]["probe"]["overrides"].update(logits={"tol": 0}),
         r"probe\.overrides\.logits\.tol = 0"),
        (lambda c: c["experiments"]["mnist_convnet"]["probe"]["overrides"].update(logits={"warm_start": True}),
         r"probe\.overrides\.logits = .*'warm_start' was unexpected"),  # one setting for the experiment's chain
        (lambda c: c["experiments"]["mnist_convnet"].update(points=["input", "conv3_preact"]),
         r"experiments\.mnist_convnet: point 'conv3_preact' matches no module of MnistConvnet; nearest module paths: \['conv2_preact'"),
        (lambda c: c["experiments"]["mnist_convnet"]["checkpoints"].update(steps=[0, 9000]),
         r"experiments\.mnist_convnet\.checkpoints\.steps: steps \[9000\] are beyond the end of training .*7820"),
        (lambda c: c["experiments"]["mnist_convnet"]["checkpoints"].update(epochs=[11]),
         r"checkpoints\.epochs: epochs \[11\] are beyond train\.epochs = 10"),
        (lambda c: c["figures"]["figure5"].update(experiment="nope"),
         r"figures\.figure5\.experiment = 'nope': no such experiment"),
        (lambda c: c["figures"]["figure5"].update(steps=[0, 100]),
         r"figures\.figure5\.steps: steps \[100\] are not checkpoints"),
    ],
)  # fmt: skip
def test_bad_values_are_rejected_naming_key_value_and_expectation(config, edit, message):
    bad = copy.deepcopy(config)
    edit(bad)
    with pytest.raises(ConfigError, match=message):
        check(bad)


def test_checkpoint_schedules_combine(config):
    c = copy.deepcopy(config)
    c["experiments"]["mnist_convnet"]["checkpoints"] = {"steps": [0, 100], "epochs": [1], "every_epochs": 4}
    assert Experiment("mnist_convnet", c).steps == (0, 100, 782, 3128, 6256, 7820)
    c["experiments"]["mnist_convnet"]["checkpoints"] = {"every_steps": 3000}
    exp = Experiment("mnist_convnet", c)
    assert exp.steps == (0, 3000, 6000, 7820)


def test_the_videos_overlay_animates_figures_5_7_8_and_the_control_in_50_frames_or_more():
    """The paper's videos: an animation of every trained figure's experiment, 50+ checkpoints each,
    the convnet's spread over its 10 epochs (at most one epoch between frames)."""
    files = ["config.yaml", "workflow/config/quick.yaml", "workflow/config/videos.yaml"]
    c = check(merge([read(REPO / f) for f in files]))
    animated = {a["experiment"] for a in c["animations"].values()}
    assert animated == {
        c["figures"][f]["experiment"] for f in ("figure5", "figure7", "figure8", "control_plain_mlp128")
    }
    for name in animated:
        exp = Experiment(name, c)
        assert len(exp.steps) >= 50 and exp.steps[0] == 0 and exp.steps[-1] == exp.total_steps, name
        assert max(b - a for a, b in zip(exp.steps, exp.steps[1:])) <= exp.total_steps / 10, name


def test_probe_overrides_apply_to_their_point_only(config):
    c = copy.deepcopy(config)
    c["experiments"]["mnist_convnet"]["probe"]["overrides"] = {"conv1_preact": {"max_iter": 50, "solver": "saga"}}
    check(c)
    exp = Experiment("mnist_convnet", c)
    assert (
        exp.probe_settings("conv1_preact")["max_iter"] == 50 and exp.probe_settings("conv1_preact")["solver"] == "saga"
    )
    probe = c["experiments"]["mnist_convnet"]["probe"]
    assert exp.probe_settings("input") == {k: v for k, v in probe.items() if k not in ("overrides", "points_per_job")}
    assert exp.probe_mem_mb("conv1_preact") > 6000 > exp.probe_mem_mb("input")


def test_probe_jobs_cover_every_point_once_in_order(config):
    c = copy.deepcopy(config)
    exp = Experiment("mnist_convnet", c)
    assert list(exp.probe_jobs) == list(exp.points) and all(exp.probe_jobs[p] == (p,) for p in exp.points)
    c["experiments"]["mnist_convnet"]["probe"]["points_per_job"] = 4
    check(c)
    exp = Experiment("mnist_convnet", c)
    assert list(exp.probe_jobs) == ["input-conv1_postpool", "conv2_preact-fc1_preact", "fc1_postact-logits"]
    assert [p for job in exp.probe_jobs.values() for p in job] == list(exp.points)
    assert "points_per_job" not in exp.probe_settings("input")
    c["experiments"]["mnist_convnet"]["probe"]["points_per_job"] = 0
    with pytest.raises(ConfigError, match=r"points_per_job = 0"):
        check(c)


@pytest.mark.parametrize(
    "experiment, edit, message",
    [  # each died inside a job with a raw torch error (or after training a checkpoint) before
        ("mlp128_aux", {"kwargs": {"n_in": 100}},
         r"experiments.mlp128_aux: the model \(probes.models:DeepMLP\) cannot take one input of dataset 'mnist', "
         r"shape \(1, 28, 28\): RuntimeError: mat1 and mat2 shapes cannot be multiplied \(1x784 and 100x128\)"),
        ("mlp128_aux", {"kwargs": {"n_classes": 3}},
         r"experiments.mlp128_aux.model: its output has shape \[3\] for one input, but dataset 'mnist' has 10 "
         r"classes: .* kwargs n_classes: 10"),
        ("mnist_convnet", {"kwargs": {"n_classes": 3}}, r"experiments.mnist_convnet.model: its output has shape \[3\]"),
        ("fig3_untrained_mlp", {"kwargs": {"n_classes": 10}}, None),
        ("mnist_convnet", {"dataset": {"n_train": 70000}},
         r"experiments.mnist_convnet.dataset: n_train \+ n_val = 70000 \+ 10000 = 80000 exceeds the 60000 training"),
        ("mnist_convnet", {"dataset": {"n_test": 10001}}, r"dataset.n_test = 10001 exceeds the 10000 test examples"),
        ("mlp128_plain", {"kwargs": {"width": 10_000_000}},
         r"experiments.mlp128_plain: one checkpoint's activations take [\d,]+ GB .* the widest layer1 of 10,000,000"),
        ("fig3_untrained_mlp", {"factory": "probes.models:MnistConvnet", "kwargs": {}},
         r"experiments.fig3_untrained_mlp: the model \(probes.models:MnistConvnet\) cannot take one input of "
         r"dataset 'gaussian_separable', shape \(128,\)"),
    ],
)  # fmt: skip
def test_a_model_that_does_not_fit_its_data_is_refused_at_start_up(config, experiment, edit, message, tmp_path):
    config["results"] = str(tmp_path)  # a fresh cache of traced shapes
    spec = config["experiments"][experiment]
    model = spec["model"] = {**spec["model"], "kwargs": dict(spec["model"].get("kwargs", {}))}
    for key, value in edit.items():
        if key == "dataset":
            spec["dataset"] = {**spec["dataset"], **value}
        else:
            model[key] = {**model[key], **value} if key == "kwargs" else value
    if message is None:
        check(config)  # never trained: its output need not be the dataset's classes
        return
    with pytest.raises(ConfigError, match=message):
        check(config)


def test_the_disk_check_counts_the_activation_files_storage_type(config, tmp_path, monkeypatch):
    """float16 files take two bytes a value: a run that fits only as float16 is not refused."""
    config["results"] = str(tmp_path)
    exp = Experiment("mnist_convnet", config)
    float32 = 70_000 * sum(exp.widths[p] for p in exp.points) * 4
    total = shutil.disk_usage(tmp_path)._replace(total=float32 * 3 // 4)
    monkeypatch.setattr("probes.config.shutil.disk_usage", lambda path: total)
    with pytest.raises(ConfigError, match=r"mnist_convnet: one checkpoint's activations take .*float32\), more than"):
        check(copy.deepcopy(config))
    config["experiments"]["mnist_convnet"]["extract"]["dtype"] = "float16"
    check(config)


EMPTY_POINT = """from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)
        self.nothing = nn.Identity()

    def forward(self, x):
        x = x.flatten(1)
        self.nothing(x[:, :0])
        return self.fc(x)
"""


def test_a_point_with_no_values_is_refused_at_start_up(config, tmp_path):
    (tmp_path / "empty.py").write_text(EMPTY_POINT)
    config["results"] = str(tmp_path / "results")
    config["experiments"]["mnist_convnet"]["model"] = {"factory": f"{tmp_path / 'empty.py'}:Net", "kwargs": {}}
    with pytest.raises(ConfigError, match=r"experiments.mnist_convnet.points: nothing has no values for one input"):
        check(config)


def test_a_setting_left_out_is_its_schema_default_and_stating_it_changes_no_stage_settings():
    schema = load_yaml(SCHEMA)
    lean = {"experiments": {"e": {"dataset": {"name": "mnist", "n_train": 500, "n_val": 100, "n_test": 100},
                                  "model": {"factory": "probes.models:MnistConvnet"}, "train": {"epochs": 1},
                                  "probe": {"tol": 1e-4, "overrides": {"input": {"max_iter": 5}}}}}}  # fmt: skip
    explicit = copy.deepcopy(lean)
    spec = explicit["experiments"]["e"]
    spec.update(seed=0, repeats=1, checkpoints={"steps": [0, "end"]}, points="all", pool={},
                extract={"batch_size": 500, "compression": None, "compression_level": 0, "shuffle": False, "dtype": "float32"})  # fmt: skip
    spec["dataset"]["split_seed"] = 0
    spec["model"]["kwargs"] = {}
    spec["train"].update(optimizer="sgd", batch_size=64, lr=0.01, lr_decay=1.0, momentum=0.0, weight_decay=0.0,
                         log_every=100)  # fmt: skip
    spec["probe"].update(solver="preconditioned_lbfgs", Cs=[1e-4, 1e-3, 1e-2, 1e-1, 1.0], max_iter=1000,
                         standardize=True, patience=1, extend_decades=3, random_state=0, select_rows=10000,
                         whiten_max_width=4096, whiten="curvature", curvature_max_params=3000, curvature_rows=2000, reduce_rank=True,
                         memory_budget_mb=6000, warm_start=False, points_per_job=1)  # fmt: skip
    explicit.update(results="results", data_dir="data", keep_activations=False, device="cpu", snapshot_minutes=10,
                    data={}, figures={}, animations={}, plot={"dpi": 150})  # fmt: skip
    assert check(lean) == check(explicit)
    a, b = Experiment("e", lean), Experiment("e", explicit)
    assert a.train_settings(0) == b.train_settings(0) and a.extract_settings(0, 0) == b.extract_settings(0, 0)
    assert [a.probe_settings(p) for p in a.points] == [b.probe_settings(p) for p in b.points]
    # an override replaces only what it names: the experiment's tol, not the schema's, at the input
    assert a.probe_settings("input")["max_iter"] == 5 and a.probe_settings("input")["tol"] == 1e-4
    assert a.spec["probe"]["overrides"] == {"input": {"max_iter": 5}}
    assert "pattern" not in a.spec["checkpoints"]  # an external experiment's setting only
    del lean["experiments"]["e"]["train"]["epochs"]
    with pytest.raises(ConfigError, match=r"experiments\.e\.train.*'epochs' is a required property"):
        check(fill_defaults(lean, schema))


def test_the_estimators_defaults_are_the_workflows():
    """``LinearProbe()`` is the probe a config's experiment gets when it states no probe setting."""
    defaults = {k: v["default"] for k, v in load_yaml(SCHEMA)["$defs"]["probe"]["properties"].items()}
    signature = inspect.signature(LinearProbe.__init__).parameters
    estimator = {k: signature[k].default for k in defaults if k in signature}
    assert set(defaults) - set(estimator) == {"memory_budget_mb"}  # the job's, not the estimator's
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in estimator.items()} == {
        k: v for k, v in defaults.items() if k in estimator
    }


def test_the_docs_give_every_default_the_schema_gives():
    """docs/configuration.md's tables name each setting with a default beside its schema default."""
    import yaml

    text = (REPO / "docs/configuration.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    s = load_yaml(SCHEMA)
    sections = {"": s, "experiment.": s["$defs"]["experiment"], "train.": s["$defs"]["experiment"]["properties"]["train"],
                "extract.": s["$defs"]["experiment"]["properties"]["extract"], "probe.": s["$defs"]["probe"],
                "probe ": s["$defs"]["experiment"]["properties"]["probe"]}  # fmt: skip
    for where, section in sections.items():
        for key, spec in section.get("properties", {}).items():
            if "default" not in spec or spec["default"] == {}:  # an empty mapping: its keys' defaults are checked
                continue
            value = (
                yaml.safe_dump(spec["default"], default_flow_style=True, width=200).strip().removesuffix("...").strip()
            )
            value = {"[0.0001, 0.001, 0.01, 0.1, 1.0]": "[1.0e-4, 1.0e-3, 1.0e-2, 1.0e-1, 1.0]", "1.0e-05": "1.0e-5", "0.0001": "1.0e-4",
                     "{steps: [0, end]}": "{steps: [0, end]}"}.get(value, value)  # fmt: skip
            assert any(f"`{key}`" in row and f"`{value}`" in row for row in rows) or any(
                f"`{key}` `{value}`" in row for row in rows
            ), f"{where}{key}: default {value} not in docs/configuration.md"
