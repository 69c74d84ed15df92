"""Config files as the workflow reads them: a base, then overlays merged onto it in order.

``merge`` is Snakemake's ``--configfile`` merge (each later file updates the
earlier ones key by key: a mapping recursively, anything else, a list
included, replaced whole). ``check_names`` catches what validation alone
reports as a dozen missing keys: an overlay's misspelt experiment, figure or
animation name. ``read`` names the line and column of a YAML syntax error,
which Snakemake's own message does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from .config import ConfigError, load_yaml
from .config import schema as config_schema

# the config sections of named entries, with each entry's definition in the schema
SECTIONS = {"experiments": "experiment", "figures": "figure", "animations": "animation"}


def read(path: Path | str) -> dict:
    """One config file's settings (an empty file has none); a YAML syntax error names its line and column."""
    try:
        config = load_yaml(path)
    except yaml.MarkedYAMLError as exc:
        mark, where = exc.problem_mark, ""
        if exc.context and exc.context_mark:
            where = f" ({exc.context} at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
        raise ConfigError(
            f"{path}, line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {exc.problem}{where}"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"{path}: a {type(config).__name__} at the top level; expected a mapping of settings")
    return config


def merge(configs: Sequence[Mapping]) -> dict:
    """The configs merged in order, later ones winning, as Snakemake merges ``--configfile`` files."""

    def update(into, new: Mapping) -> dict:
        into = dict(into) if isinstance(into, Mapping) else {}
        for key, value in new.items():
            into[key] = update(into.get(key), value) if isinstance(value, Mapping) else value
        return into

    out: dict = {}
    for config in configs:
        out = update(out, config or {})
    return out


def incomplete(config: Mapping) -> str:
    """What ``config`` lacks to be a whole configuration on its own, as a phrase (empty: nothing).
    An overlay lacks some: experiments, or its experiments' dataset or model."""
    schema = config_schema()
    missing = [key for key in schema["required"] if key not in config]
    required = schema["$defs"]["experiment"]["required"]
    entries = config.get("experiments")
    partial = [n for n, e in (entries.items() if isinstance(entries, Mapping) else ())
               if isinstance(e, Mapping) and any(k not in e for k in required)]  # fmt: skip
    if partial:
        names = ", ".join(partial[:3]) + (f" and {len(partial) - 3} more" if len(partial) > 3 else "")
        missing.append(f"{' or '.join(required)} for experiment{'s' * (len(partial) > 1)} {names}")
    return "; ".join(missing)


def check_names(layers: Sequence[tuple[str, Mapping | None]]) -> None:
    """Refuse a named entry an overlay adds that lacks most of its required keys even once merged.

    ``layers`` are (file, parsed content) in merge order, the base first. Such an
    entry is a name the base does not have, misspelt (``mlp128_axu``): one sentence
    naming it and the base's names, instead of its missing keys one by one.
    """
    if not layers:
        return
    schema = config_schema()
    merged = merge([config for _, config in layers])
    base = layers[0][1] or {}
    for section, definition in SECTIONS.items():
        required = schema["$defs"][definition]["required"]
        known = base.get(section) if isinstance(base.get(section), Mapping) else {}
        for source, config in layers[1:]:
            entries = (config or {}).get(section)
            for name in entries if isinstance(entries, Mapping) else {}:
                entry = merged[section][name]
                if name in known or not isinstance(entry, Mapping):
                    continue
                if 2 * sum(key not in entry for key in required) > len(required):
                    raise ConfigError(f"{source}: unknown {definition} {name!r}; known: {', '.join(sorted(known))}")
