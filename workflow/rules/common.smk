# Shared state and helpers: validated config, experiments, output paths.
import json
import shlex
import shutil
from pathlib import Path

from probes import datasets
from probes.config import SCHEMA, Experiment, validate
from probes.configfiles import check_names, read
from probes.external import content_digest
from probes.provenance import STAGE_MODULES, stage_digest


def config_files() -> list:
    """The config files Snakemake merged, in its order: the Snakefile's configfile, then --configfile's."""
    overlays = list(workflow.overwrite_configfiles)
    return [f for f in workflow.configfiles if f not in overlays] + overlays


CONFIG_LAYERS = [(str(f), read(f)) for f in config_files()]
check_names(CONFIG_LAYERS)
validate(config, SCHEMA, source=" + ".join(f for f, _ in CONFIG_LAYERS) or "workflow config")

RESULTS = config["results"]
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
DATA_DIR = config["data_dir"]
EXPERIMENTS = {name: Experiment(name, config) for name in config["experiments"]}
# each rule's params carry the digest of the code its stage runs (src/probes/provenance.py)
CODE = {stage: stage_digest(stage) for stage in STAGE_MODULES}
RUN = f"{RESULTS}/{{experiment}}/r{{repeat}}"
# where training, extraction and the probe solver run: a resource of those rules, not a param (changing
# it reruns nothing)
DEVICE = config["device"]
# a training job saves a resume snapshot this often
SNAPSHOT_SECONDS = round(60 * config["snapshot_minutes"])


wildcard_constraints:
    experiment="[A-Za-z0-9_-]+",
    repeat=r"\d+",
    step=r"\d+",
    job="[A-Za-z0-9_-]+",
    figure="[A-Za-z0-9_-]+",
    animation="[A-Za-z0-9_-]+",


def as_json(obj) -> str:
    return json.dumps(obj, sort_keys=True)


def named(section: str, name: str):
    """The entry ``name`` of a config section (an Experiment for ``experiments``), or a one-line error
    listing the section's names: a target's misspelt name would otherwise be a KeyError."""
    entries = EXPERIMENTS if section == "experiments" else config[section]
    if name not in entries:
        raise ValueError(f"no {section[:-1]} {name!r} in the config; its {section} are {', '.join(entries)}")
    return entries[name]


def experiment(wildcards) -> Experiment:
    return named("experiments", wildcards.experiment)


def dataset_files(wildcards) -> list:
    """The files an experiment's dataset is read from (none for generated data): the registry's.

    Downloaded files (the data rule's outputs) are marked ancient: their bytes are fixed by their
    MD5s, so refetching them (say from another source) makes nothing downstream stale. The user's
    own files (``arrays``) are not: editing one reruns what was made from it.
    """
    ds = experiment(wildcards).spec["dataset"]
    return [ancient(str(f)) for f in datasets.fetched_files(ds, DATA_DIR)] + [str(f) for f in datasets.user_files(ds)]


def checkpoint_input(wildcards):
    """The checkpoint an extraction reads: the train rule's output, or a file made elsewhere
    (``checkpoints.dir``), then marked ancient: its identity is its content (``checkpoint_digest``)."""
    exp = experiment(wildcards)
    path = exp.checkpoint_file(int(wildcards.repeat), int(wildcards.step), RESULTS)
    return ancient(path) if exp.external else path


def checkpoint_digest(wildcards) -> str:
    """SHA-256 of an external checkpoint file (cached by size and mtime); empty for the pipeline's own."""
    exp = experiment(wildcards)
    if not exp.external:
        return ""
    return content_digest(Path(exp.found[int(wildcards.step)]), Path(RESULTS) / ".cache" / "checkpoint-digests.json")


def run_files(exp: Experiment, pattern: str) -> list[str]:
    """``pattern`` (with {repeat}, {step}, {job}) for every repeat, checkpoint and probe job."""
    return [
        pattern.format(experiment=exp.name, repeat=r, step=s, job=j)
        for r in exp.repeats
        for s in exp.steps
        for j in exp.probe_jobs
    ]


def job_points(wildcards) -> tuple[str, ...]:
    """The probe points one probe job fits."""
    exp = experiment(wildcards)
    if wildcards.job not in exp.probe_jobs:
        raise ValueError(f"{wildcards.job!r} is not a probe job of {exp.name}; its jobs are {list(exp.probe_jobs)}")
    return exp.probe_jobs[wildcards.job]


def probe_settings(wildcards) -> str:
    """Exactly what a probe job's results depend on: its points, their indices and probe settings."""
    exp = experiment(wildcards)
    points = [
        {"point": p, "layer_index": exp.points.index(p), "probe": exp.probe_settings(p)}
        for p in job_points(wildcards)
    ]
    return as_json(
        {"experiment": exp.name, "repeat": int(wildcards.repeat), "step": int(wildcards.step), "points": points}
    )


def step_priority(wildcards) -> float:
    """A training or extraction job's scheduling priority: in (0, 1], higher for earlier steps.
    Extraction in step order keeps each checkpoint's (temp) activation file just ahead of its
    probes, which with ``warm_start`` wait for the previous checkpoint's."""
    return 1.0 - int(wildcards.step) / (experiment(wildcards).total_steps + 1)


def probe_weights_at(wildcards, step: int) -> list[str]:
    """The same probe job's weights at checkpoint ``step``."""
    return [PROBE_WEIGHTS.format(experiment=wildcards.experiment, repeat=wildcards.repeat, step=step, job=wildcards.job)]


def file_option(flag: str, files: list) -> str:
    """``flag`` and the one file of ``files`` (quoted), or nothing when there is none."""
    return f"{flag} {shlex.quote(files[0])}" if files else ""


def previous_probe_weights(wildcards) -> list[str]:
    """With ``probe.warm_start``, the same probe job's weights at the previous checkpoint (none at the first)."""
    exp = experiment(wildcards)
    step = int(wildcards.step)
    if not exp.spec["probe"]["warm_start"] or step == exp.steps[0]:
        return []
    return probe_weights_at(wildcards, exp.steps[exp.steps.index(step) - 1])


def first_probe_weights(wildcards) -> list[str]:
    """The same probe job's weights at the experiment's first checkpoint (none there): a probe
    whose settings and data are the same as that one's (the input, a frozen layer) is reused.
    An input like any other: that job made again reruns the later ones (``ancient`` would spare
    them, but in Snakemake 9 it also hides their own params' changes: snakemake#4166)."""
    first = experiment(wildcards).steps[0]
    return [] if int(wildcards.step) == first else probe_weights_at(wildcards, first)


def figure_spec(wildcards) -> dict:
    return named("figures", wildcards.figure)


def animation_spec(wildcards) -> dict:
    return named("animations", wildcards.animation)


def train_inputs(wildcards) -> list:
    """A training job's inputs (its dataset's files), for a checkpoint the experiment's schedule has:
    any other step or repeat is a mistyped target, refused rather than trained."""
    exp = experiment(wildcards)
    if int(wildcards.repeat) not in exp.repeats:
        last = "" if len(exp.repeats) == 1 else f" to r{exp.repeats[-1]}"
        raise ValueError(
            f"repeat {int(wildcards.repeat)} is not a repeat of {exp.name}; its repeats are r0{last} "
            f"(experiments.{exp.name}.repeats = {len(exp.repeats)})"
        )
    if int(wildcards.step) not in exp.steps:
        raise ValueError(
            f"step {int(wildcards.step)} is not a checkpoint of {exp.name}; experiments.{exp.name}.checkpoints "
            f"schedules steps {', '.join(map(str, exp.steps))}"
        )
    return dataset_files(wildcards)


def plot_marks(spec: dict) -> str:
    """The plot's ``--mark POINT... --mark-label LABEL`` for each group of layers its experiment's
    model singles out (auxiliary heads, skip target)."""
    marks = EXPERIMENTS[spec["experiment"]].marks
    return " ".join(f"--mark {' '.join(points)} --mark-label {shlex.quote(label)}" for label, points in marks)


def chance_arg(spec: dict) -> str:
    return "" if spec["chance"] is None else f"--chance {spec['chance']}"


PROBE_JSON = f"{RUN}/probes/step{{step}}/{{job}}.json"
PROBE_WEIGHTS = f"{RUN}/probes/step{{step}}/{{job}}.npz"
MODEL_JSON = f"{RUN}/model/step{{step}}.json"


ANIMATION_FORMATS = ["gif", "mp4"] if shutil.which("ffmpeg") else ["gif"]


def all_targets() -> list[str]:
    targets = [f"{RESULTS}/{name}/probes.csv" for name in EXPERIMENTS]
    targets += [f"{RESULTS}/figures/{fig}.{ext}" for fig in config["figures"] for ext in ("png", "pdf")]
    targets += [f"{RESULTS}/animations/{a}.{ext}" for a in config["animations"] for ext in ANIMATION_FORMATS]
    return targets


# The probe-fitting benchmark (workflow/rules/benchmark.smk): its cases and settings.
# (case name, experiment, checkpoint: "first", "last" or a step, point, training rows or None for all):
# the MNIST convnet's five probe-point classes at initialisation and after training (conv2_postpool on
# its first 10,000 training rows, the two full-rank wide points on 5,000), a 128-wide layer of the
# Figure 8 MLP at steps 500 and 5,000, its collapsed layer63, and layer49, whose C lies past the grid's
# upper end. The wide points' scikit-learn lbfgs rows are read off their trace run (BENCHMARK_WIDE).
BENCHMARK_CASES = [
    (f"convnet_{label}/{point}", "mnist_convnet", step, point, rows)
    for label, step in (("init", "first"), ("trained", "last"))
    for point, rows in (
        ("input", None),
        ("fc1_postact", None),
        ("conv2_postpool", 10000),
        ("conv2_postact", 5000),
        ("conv1_postact", 5000),
    )
] + [
    ("mlp128_skip_step500/layer96", "mlp128_skip", 500, "layer96", None),
    ("mlp128_skip_trained/layer96", "mlp128_skip", "last", "layer96", None),
    ("mlp128_skip_trained/layer63", "mlp128_skip", "last", "layer63", None),
    ("mlp128_skip_trained/layer49", "mlp128_skip", "last", "layer49", None),
]
BENCHMARK_REPEATS = 3
BENCHMARK_WIDE = [n for n, *_ in BENCHMARK_CASES if n.endswith(("conv2_postact", "conv1_postact"))]
BENCHMARK_WIDE_ARGS = " ".join(
    f"--case-methods {n}=project,cyanure,sklearnex,sklearnex_tuned,rmsprop --sklearn-from-trace {n}"
    f" --max-iter {n}=3000,1500"
    for n in BENCHMARK_WIDE
)
BENCHMARK_OUT = f"{RESULTS}/probe_benchmark"


def benchmark_cases() -> list[tuple[str, str, str]]:
    """(name, activation file, point) of every case, from the experiments in the config."""
    cases = []
    for name, exp_name, which, point, _ in BENCHMARK_CASES:
        exp = named("experiments", exp_name)
        step = exp.steps[0] if which == "first" else exp.steps[-1] if which == "last" else int(which)
        cases.append((name, f"{RESULTS}/{exp_name}/r0/activations/step{step}.h5", point))
    return cases
