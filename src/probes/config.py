"""The workflow's configuration: validation, and what each stage needs of it.

``validate(config, schema)`` checks a config against the JSON schema and the
facts a schema cannot express (probe points a model has, steps within
training), raising ``ConfigError`` naming the key path, the value and what was
expected. ``Experiment`` turns one experiment's description into the exact
settings each stage depends on, so each rule's ``params`` hold no more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import jsonschema
import yaml

from .shapes import input_shape, point_widths, steps_per_epoch, total_steps

SCHEMA = Path(__file__).parent / "schema" / "config.schema.yaml"  # the config's JSON schema, shipped with the package


class ConfigError(ValueError):
    """A configuration value that is missing, of the wrong type, or out of range."""


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def load_yaml(path: Path | str) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def validate(config: dict, schema_path: Path | str, source: str = "config") -> dict:
    """Check ``config`` against the schema and cross-field rules; return it unchanged."""
    schema = load_yaml(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors:
            value = e.instance if not isinstance(e.instance, (dict, list)) or len(str(e.instance)) < 80 else "..."
            lines.append(f"  {_key(e.absolute_path)} = {value!r}: {e.message}")
        raise ConfigError(f"{source}: {len(errors)} invalid setting(s):\n" + "\n".join(lines))
    for name in config["experiments"]:
        exp = Experiment(name, config)
        try:
            exp.points  # noqa: B018 - resolving checks the model description and the probe points
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: experiments.{name}.model = {exp.spec['model']}: {exc}") from exc
        exp.steps  # noqa: B018 - resolving checks the schedule
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
        steps = experiment_of(f"animations.{anim}", spec).steps
        if len(steps) < 3:
            raise ConfigError(
                f"{source}: animations.{anim}: experiment {spec['experiment']!r} has {len(steps)} checkpoints "
                f"({list(steps)}); an animation needs at least 3"
            )
    return config


@dataclass(frozen=True)
class Experiment:
    """One experiment of the config, with the settings each stage depends on."""

    name: str
    config: dict

    @property
    def spec(self) -> dict:
        return self.config["experiments"][self.name]

    def _where(self, key: str) -> str:
        return f"experiments.{self.name}.{key}"

    @cached_property
    def points(self) -> tuple[str, ...]:
        available = tuple(self.widths)
        wanted = self.spec["points"]
        if wanted == "all":
            return available
        unknown = [p for p in wanted if p not in available]
        if unknown:
            raise ConfigError(
                f"{self._where('points')}: {unknown} are not probe points of model "
                f"{self.spec['model']['name']!r}; expected some of {list(available)}"
            )
        return tuple(p for p in available if p in wanted)

    @property
    def total_steps(self) -> int:
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
        """Checkpoint steps: the union of every schedule given, in order."""
        ck = self.spec["checkpoints"]
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

    def extract_settings(self, repeat: int) -> dict:
        s = self.spec
        return {"experiment": self.name, "repeat": repeat, "model": s["model"], "dataset": s["dataset"],
                "points": list(self.points), "extract": s["extract"]}  # fmt: skip

    @property
    def probe_overrides(self) -> dict:
        return self.spec["probe"].get("overrides", {})

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
        k = self.spec["probe"].get("points_per_job", 1)
        chunks = [self.points[i : i + k] for i in range(0, len(self.points), k)]
        return {c[0] if len(c) == 1 else f"{c[0]}-{c[-1]}": c for c in chunks}

    @cached_property
    def widths(self) -> dict[str, int]:
        return point_widths(self.spec["model"], input_shape(self.spec["dataset"]))

    def probe_mem_mb(self, point: str) -> int:
        """Memory a probe job needs: train+val activations in float32, plus headroom."""
        ds = self.spec["dataset"]
        data_mb = (ds["n_train"] + ds["n_val"]) * self.widths[point] * 4 / 2**20
        return int(math.ceil(data_mb * 1.15 + 1024))
