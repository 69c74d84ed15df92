"""Watch a training run: probe each new checkpoint as an external training writes it.

``watch`` polls the checkpoint directories of a config's external experiments (``checkpoints:
{dir, pattern}``). A file counts as complete once its size and modification time held still for
one poll and it loads (``torch.load``): a checkpoint still being written is skipped until then.
Whenever the set of complete checkpoints grows or changes, it runs Snakemake with an overlay
restricting each experiment to those (``checkpoints.steps``), which brings probes, tables,
figures and animations up to date; only the new or replaced checkpoints' jobs run.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .atomic import atomic_output
from .config import Experiment, fill_defaults, load_yaml, schema
from .external import find_checkpoints

log = logging.getLogger(__name__)


def loads(path: Path) -> bool:
    """Whether ``path`` is a complete, loadable checkpoint."""
    import torch

    for weights_only in (True, False):
        try:
            torch.load(path, map_location="cpu", weights_only=weights_only)
            return True
        except Exception:  # noqa: BLE001, S112 - unreadable now: not complete yet (or never)
            continue
    return False


class Watcher:
    """The complete checkpoints of each external experiment, from one poll to the next."""

    def __init__(self, config: dict, workdir: Path) -> None:
        self.workdir = workdir
        experiments = [Experiment(name, config) for name in config["experiments"]]
        self.dirs = {e.name: (workdir / e.spec["checkpoints"]["dir"], e.pattern) for e in experiments if e.external}
        if not self.dirs:
            raise ValueError("no experiment of the config has checkpoints: {dir, pattern} to watch")
        self.seen: dict[Path, tuple[int, int]] = {}  # the stat of each file at the last poll
        self.complete: dict[str, dict[int, tuple[int, int]]] = {name: {} for name in self.dirs}

    def poll(self) -> bool:
        """Look again; whether the complete checkpoints changed."""
        changed = False
        for name, (directory, pattern) in self.dirs.items():
            found = (
                find_checkpoints(directory, pattern, f"experiments.{name}.checkpoints") if directory.is_dir() else {}
            )
            for step, path in found.items():
                st = path.stat()
                stamp = (st.st_size, st.st_mtime_ns)
                steady = self.seen.get(path) == stamp
                self.seen[path] = stamp
                if self.complete[name].get(step) == stamp or not steady:
                    continue  # known as it is, or still changing
                if loads(path):
                    log.info("%s: checkpoint %s complete (step %d)", name, path.name, step)
                    self.complete[name][step] = stamp
                    changed = True
                else:
                    log.info("%s: %s does not load yet: skipped until complete", name, path.name)
            for step in [s for s in self.complete[name] if s not in found]:
                del self.complete[name][step]
                changed = True
        return changed

    def overlay(self) -> dict:
        """The config overlay restricting each experiment to its complete checkpoints."""
        return {"experiments": {name: {"checkpoints": {"steps": sorted(steps)}}
                                for name, steps in self.complete.items() if steps}}  # fmt: skip


def watch(configfile: Path, snakefile: Path, workdir: Path, interval: float = 30.0, cores: int = 2,
          idle_exit: float | None = None, extra: list[str] | None = None) -> int:  # fmt: skip
    """Poll every ``interval`` seconds and run Snakemake on each change; return its last exit code.

    Stops after ``idle_exit`` seconds without a new complete checkpoint (``None``: never, until
    interrupted). Each run's console output goes to ``<results>/logs/watch.log``."""
    config = fill_defaults(load_yaml(configfile), schema())
    watcher = Watcher(config, workdir)
    results = workdir / config["results"]
    overlay_path = results / ".watch" / "overlay.yaml"
    last_change, code = time.time(), 0
    while True:
        if watcher.poll():
            last_change = time.time()
            ready = {n: sorted(s) for n, s in watcher.complete.items()}
            if all(ready.values()):  # every experiment has a checkpoint: the config resolves
                with atomic_output(overlay_path) as tmp:
                    tmp.write_text(yaml.safe_dump(watcher.overlay()))
                cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", str(workdir),
                       "--cores", str(cores), "--rerun-incomplete", "--configfile", str(configfile),
                       str(overlay_path), *(extra or [])]  # fmt: skip
                log.info("complete checkpoints %s: running snakemake", ready)
                (results / "logs").mkdir(parents=True, exist_ok=True)
                with open(results / "logs" / "watch.log", "a") as out:
                    code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
                log.info("snakemake exited %d (its output: %s)", code, results / "logs" / "watch.log")
                last_change = time.time()  # idle time counts from the end of the run
        if idle_exit is not None and time.time() - last_change > idle_exit:
            return code
        time.sleep(interval)
