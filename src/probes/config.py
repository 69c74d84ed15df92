"""The workflow's configuration: validation, and what each stage needs of it.

``validate(config, schema)`` fills in the schema's defaults (``default:``), so
a config states only what differs, then checks it against the schema and the
facts a schema cannot express (probe points a model has, steps within
training), raising ``ConfigError`` naming the key path, the value and what was
expected. ``Experiment`` turns one experiment's description into the exact
settings each stage depends on, so each rule's ``params`` hold no more.
"""

from __future__ import annotations

import copy
import functools
import math
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import jsonschema
import yaml

from . import datasets
from .schedule import steps_per_epoch, total_steps

SCHEMA = Path(__file__).parent / "schema" / "config.schema.yaml"  # the config's JSON schema, shipped with the package


class ConfigError(ValueError):
    """A configuration value that is missing, of the wrong type, or out of range."""


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def load_yaml(path: Path | str) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


@functools.cache
def schema() -> dict:
    """The config schema shipped with the package (``SCHEMA``), read once."""
    return load_yaml(SCHEMA)


def fill_defaults(instance, schema: dict, root: dict | None = None):
    """Set, in place, every setting ``instance`` leaves out that ``schema`` gives a ``default``
    (a copy of it, itself filled in), through nested mappings (``properties``, ``$ref``,
    ``additionalProperties``), but not into a mapping marked ``x-no-defaults`` (the per-point
    probe overrides, which replace only what they name). Returns ``instance``."""
    root = schema if root is None else root
    if "$ref" in schema:  # a local reference, "#/$defs/name", beside the schema's own keywords
        target = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"},
                  "properties": {**target.get("properties", {}), **schema.get("properties", {})}}  # fmt: skip
    if not isinstance(instance, dict) or schema.get("x-no-defaults"):
        return instance
    properties = schema.get("properties", {})
    for key, sub in properties.items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            fill_defaults(instance[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in properties:
                fill_defaults(value, extra, root)
    return instance


def check_schema(config: dict, schema_path: Path | str, source: str = "config") -> dict:
    """Fill in the schema's defaults (in place) and check ``config`` against the schema alone."""
    schema = load_yaml(schema_path)
    fill_defaults(config, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors:
            value = e.instance if not isinstance(e.instance, (dict, list)) or len(str(e.instance)) < 80 else "..."
            message = e.schema.get("errorMessage", e.message) if isinstance(e.schema, dict) else e.message
            lines.append(f"  {_key(e.absolute_path)} = {value!r}: {message}")
        raise ConfigError(f"{source}: {len(errors)} invalid setting(s):\n" + "\n".join(lines))
    return config


def validate(config: dict, schema_path: Path | str, source: str = "config") -> dict:
    """Fill in the schema's defaults (in place), check ``config`` against the schema and
    cross-field rules, and return it."""
    if "mnist" in config:
        raise ConfigError(f"{source}: mnist: the MNIST sources moved to data.mnist (the same keys: local_dir, "
                          "npm_package, mirrors; each optional); expected no top-level mnist key")  # fmt: skip
    check_schema(config, schema_path, source)
    for name in config["experiments"]:
        exp = Experiment(name, config)
        try:
            datasets.input_shape(exp.spec["dataset"])  # an arrays dataset's files: read and checked here
        except datasets.DatasetError as exc:
            raise ConfigError(f"{source}: experiments.{name}.dataset: {exc}") from exc
        try:
            exp.points  # noqa: B018 - resolving builds the model and checks the probe points
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: experiments.{name}: {exc}") from exc
        if exp.external and exp.spec["repeats"] != 1:
            raise ConfigError(f"{source}: experiments.{name}.repeats = {exp.spec['repeats']}: checkpoints from a "
                              "directory are one training run; expected 1")  # fmt: skip
        if not exp.external and "train" not in exp.spec:
            raise ConfigError(f"{source}: experiments.{name}: no train settings and no checkpoints.dir; give "
                              "train: (the pipeline trains) or checkpoints: {dir, pattern} (checkpoints made elsewhere)")  # fmt: skip
        exp.steps  # noqa: B018 - resolving checks the schedule
        check_fits(exp, source, Path(config["results"]))
        for point in exp.probe_overrides:
            if point not in exp.points:
                raise ConfigError(
                    f"{source}: experiments.{name}.probe.overrides.{point}: not a probed point; expected one of {list(exp.points)}"
                )

    def experiment_of(where: str, spec: dict) -> Experiment:
        if spec["experiment"] not in config["experiments"]:
            raise ConfigError(
                f"{source}: {where}.experiment = {spec['experiment']!r}: no such experiment; "
                f"expected one of {sorted(config['experiments'])}"
            )
        return Experiment(spec["experiment"], config)

    for fig, spec in config["figures"].items():
        exp = experiment_of(f"figures.{fig}", spec)
        steps = exp.resolve_steps(spec["steps"], f"figures.{fig}.steps")
        missing = [s for s in steps if s not in exp.steps]
        if missing:
            raise ConfigError(
                f"{source}: figures.{fig}.steps: steps {missing} are not checkpoints of {exp.name} ({exp.steps})"
            )
        if len(spec["panels"]) != len(steps):
            raise ConfigError(f"{source}: figures.{fig}.panels: {len(spec['panels'])} titles for {len(steps)} steps")
    for anim, spec in config["animations"].items():
        exp = experiment_of(f"animations.{anim}", spec)
        if len(exp.steps) < 3 and not exp.external:  # an external run's frames come as it writes them
            steps = exp.steps
            raise ConfigError(
                f"{source}: animations.{anim}: experiment {spec['experiment']!r} has {len(steps)} checkpoints "
                f"({list(steps)}); an animation needs at least 3"
            )
    return config


def check_fits(exp: Experiment, source: str, results: Path) -> None:
    """Refuse, before any job runs, a model that does not fit its dataset (inputs, classes), splits
    larger than the dataset, and activations larger than the disk that would hold them."""
    spec, where = exp.spec, f"{source}: experiments.{exp.name}"
    ds, classes = spec["dataset"], datasets.classes(spec["dataset"])
    out = exp.output_shape
    if exp.trains and out != [classes]:
        raise ConfigError(f"{where}.model: its output has shape {out} for one input, but dataset {ds['name']!r} "
                          f"has {classes} classes: the training objective needs one score per class "
                          f"(for the built-in models: kwargs n_classes: {classes})")  # fmt: skip
    for pool in datasets.sizes(ds):
        n = [ds[f"n_{s}"] for s in pool.splits]
        if sum(n) <= pool.size:
            continue
        if len(n) == 1:
            raise ConfigError(f"{where}.dataset.n_{pool.splits[0]} = {n[0]} exceeds the {pool.size} {pool.what}")
        raise ConfigError(f"{where}.dataset: {' + '.join(f'n_{s}' for s in pool.splits)} = "
                          f"{' + '.join(map(str, n))} = {sum(n)} exceeds the {pool.size} {pool.what} they are drawn from")  # fmt: skip
    empty = [p for p in exp.points if exp.widths[p] == 0]
    if empty:
        raise ConfigError(f"{where}.points: {', '.join(empty)} {'has' if len(empty) == 1 else 'have'} no values "
                          "for one input: a probe needs at least one feature; leave it out of points:")  # fmt: skip
    rows = ds["n_train"] + ds["n_val"] + ds["n_test"]
    dtype = spec["extract"]["dtype"]
    need = rows * sum(exp.widths[p] for p in exp.points) * {"float32": 4, "float16": 2}[dtype]
    disk = shutil.disk_usage(next(p for p in (results, *results.resolve().parents) if p.exists())).total
    if need > disk:
        widest = max(exp.points, key=exp.widths.__getitem__)
        raise ConfigError(f"{where}: one checkpoint's activations take {need / 1e9:,.0f} GB ({rows:,} rows of "
                          f"{len(exp.points)} points, the widest {widest} of {exp.widths[widest]:,} values, {dtype}), "
                          f"more than the {disk / 1e9:,.0f} GB file system holding {results}: probe fewer or "
                          "narrower points (points:) or fewer rows")  # fmt: skip


@dataclass(frozen=True)
class Experiment:
    """One experiment of the config, with the settings each stage depends on (the config's
    settings left out are given their schema defaults, in place, as ``validate`` does)."""

    name: str
    config: dict

    def __post_init__(self) -> None:
        fill_defaults(self.config, schema())

    @property
    def spec(self) -> dict:
        return self.config["experiments"][self.name]

    def _where(self, key: str) -> str:
        return f"experiments.{self.name}.{key}"

    @cached_property
    def shapes(self) -> list[dict]:
        """Every probed point's (and the output's) shape and width, from the model (``layers.py``),
        recorded once under ``<results>/.cache/points``."""
        from .layers import point_shapes

        cache = Path(self.config["results"]) / ".cache" / "points"
        s = self.spec
        return point_shapes(s["model"], datasets.input_shape(s["dataset"]), s["points"], s["pool"], cache,
                            dataset=f"dataset {s['dataset']['name']!r}")  # fmt: skip

    @property
    def points(self) -> tuple[str, ...]:
        return tuple(r["point"] for r in self.shapes if r["probed"])

    @property
    def output_shape(self) -> list[int]:
        return next(r["shape"] for r in self.shapes if r["point"] == "output")

    @property
    def trains(self) -> bool:
        """Whether the pipeline trains this experiment's model (beyond initialisation)."""
        return not self.external and self.spec["train"]["epochs"] > 0

    @property
    def external(self) -> bool:
        """Whether the checkpoints come from a directory written by someone else's training."""
        return "dir" in self.spec["checkpoints"]

    @property
    def pattern(self) -> str:
        """An external experiment's checkpoint file name pattern."""
        from .external import DEFAULT_PATTERN

        return self.spec["checkpoints"].get("pattern", DEFAULT_PATTERN)

    @cached_property
    def found(self) -> dict[int, Path]:
        """An external experiment's checkpoint files by step (``checkpoints.dir`` / ``pattern``)."""
        from .external import find_checkpoints

        ck = self.spec["checkpoints"]
        try:
            found = find_checkpoints(Path(ck["dir"]), self.pattern, self._where("checkpoints"))
        except ValueError as exc:
            raise ConfigError(
                f"{exc} (write checkpoints there first, or run `probes watch` while they are written)"
            ) from exc
        if "steps" in ck:  # only these (a watch passes the complete ones)
            found = {s: p for s, p in found.items() if s in ck["steps"]}
        if not found:
            raise ConfigError(f"{self._where('checkpoints')}: no checkpoint file in {ck['dir']} matches "
                              f"{self.pattern!r}{' among steps ' + str(ck['steps']) if 'steps' in ck else ''}")  # fmt: skip
        return found

    def checkpoint_file(self, repeat: int, step: int, results: str) -> str:
        """Where the checkpoint of ``step`` is: the external file, or the train rule's output."""
        if self.external:
            return str(self.found[step])
        return f"{results}/{self.name}/r{repeat}/checkpoints/step{step}.pt"

    @property
    def total_steps(self) -> int:
        if self.external:
            return max(self.found)
        return total_steps(self.spec["dataset"], self.spec["train"])

    def resolve_steps(self, steps: list, where: str) -> list[int]:
        last = self.total_steps
        out = [last if s == "end" else s for s in steps]
        beyond = [s for s in out if s > last]
        if beyond:
            raise ConfigError(f"{where}: steps {beyond} are beyond the end of training of {self.name} ({last} steps)")
        return out

    @cached_property
    def steps(self) -> tuple[int, ...]:
        """Checkpoint steps: the union of every schedule given, in order (external: the files found)."""
        ck = self.spec["checkpoints"]
        if self.external:
            return tuple(sorted(self.found))
        spe = steps_per_epoch(self.spec["dataset"], self.spec["train"])
        last = self.total_steps
        steps = set(self.resolve_steps(ck.get("steps", []), self._where("checkpoints.steps")))
        epochs = ck.get("epochs", [])
        beyond = [e for e in epochs if e > self.spec["train"]["epochs"]]
        if beyond:
            raise ConfigError(
                f"{self._where('checkpoints.epochs')}: epochs {beyond} are beyond train.epochs = {self.spec['train']['epochs']}"
            )
        steps.update(e * spe for e in epochs)
        if "every_epochs" in ck:
            steps.update(range(0, last + 1, ck["every_epochs"] * spe))
            steps.add(last)
        if "every_steps" in ck:
            steps.update(range(0, last + 1, ck["every_steps"]))
            steps.add(last)
        return tuple(sorted(steps))

    @property
    def repeats(self) -> range:
        return range(self.spec["repeats"])

    def train_settings(self, repeat: int) -> dict:
        s = self.spec
        return {"experiment": self.name, "repeat": repeat, "seed": s["seed"],
                "model": s["model"], "dataset": s["dataset"], "train": s["train"]}  # fmt: skip

    def extract_settings(self, repeat: int, step: int) -> dict:
        s = self.spec
        settings = {"experiment": self.name, "repeat": repeat, "model": s["model"], "dataset": s["dataset"],
                    "points": list(self.points), "pool": s["pool"], "extract": s["extract"]}  # fmt: skip
        return {**settings, "external": True, "step": step} if self.external else settings

    @property
    def probe_overrides(self) -> dict:
        return self.spec["probe"]["overrides"]

    def probe_settings(self, point: str) -> dict:
        """The probe parameters of one point: the experiment's, with the point's overrides."""
        base = {k: v for k, v in self.spec["probe"].items() if k not in ("overrides", "points_per_job")}
        return {**base, **self.probe_overrides.get(point, {})}

    @cached_property
    def probe_jobs(self) -> dict[str, tuple[str, ...]]:
        """Probe jobs per checkpoint: name -> the points it fits, ``probe.points_per_job`` at a time.

        A job of one point is named after it; a job of several after its first
        and last point (``layer1-layer16``).
        """
        k = self.spec["probe"]["points_per_job"]
        chunks = [self.points[i : i + k] for i in range(0, len(self.points), k)]
        return {c[0] if len(c) == 1 else f"{c[0]}-{c[-1]}": c for c in chunks}

    @property
    def marks(self) -> list[tuple[str, list[str]]]:
        """The probed points a figure marks, in groups with a legend label: a deep MLP's auxiliary
        heads (after every ``aux_every``-th hidden layer but the last, as ``models.DeepMLP``) and
        the target of its skip connection."""
        model = self.spec["model"]
        if model["factory"] != "probes.models:DeepMLP":
            return []
        kw = model.get("kwargs", {})
        every, skip, depth = kw.get("aux_every", 0), kw.get("skip_to", 0), kw.get("depth", 128)
        groups = []
        if every:
            groups.append((f"auxiliary head (every {every} layers)", [f"layer{i}" for i in range(every, depth, every)]))
        if skip:
            groups.append((f"skip connection target (layer {skip} also takes the input)", [f"layer{skip}"]))
        probed = [(label, [p for p in points if p in self.points]) for label, points in groups]
        return [(label, points) for label, points in probed if points]

    @property
    def widths(self) -> dict[str, int]:
        return {r["point"]: r["width"] for r in self.shapes if r["probed"]}

    def probe_mem_mb(self, point: str) -> int:
        """Memory a probe job needs: train+val activations in float32, plus headroom."""
        ds = self.spec["dataset"]
        data_mb = (ds["n_train"] + ds["n_val"]) * self.widths[point] * 4 / 2**20
        return int(math.ceil(data_mb * 1.15 + 1024))
