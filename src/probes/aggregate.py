"""Collect per-probe JSON results into tidy CSV tables."""

from __future__ import annotations

from pathlib import Path

from .files import read_json, write_csv

PROBE_COLUMNS = [
    "experiment", "repeat", "step", "point", "layer_index", "width", "activation_norm", "C", "C_limit", "solver",
    "train_error", "val_error", "test_error", "train_loss", "val_loss", "test_loss",
    "n_iter", "converged", "gap_bound", "status", "fit_seconds", "start", "warnings",
]  # fmt: skip
MODEL_COLUMNS = [
    "experiment", "repeat", "step", "epoch",
    "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
]  # fmt: skip


def aggregate(probe_jsons: list[Path], model_jsons: list[Path], probes_csv: Path, model_csv: Path) -> None:
    """One row per probe (each JSON holds a list of them) into ``probes_csv``; one row per checkpoint's own model metrics into ``model_csv``."""
    rows = [r for p in probe_jsons for r in read_json(p)]  # one list of probes per job
    for r in rows:
        r["warnings"] = " | ".join(r.get("warnings", []))
    rows.sort(key=lambda r: (r["experiment"], r["repeat"], r["step"], r["layer_index"]))
    write_csv(rows, PROBE_COLUMNS, probes_csv)
    models = sorted((read_json(p) for p in model_jsons), key=lambda r: (r["repeat"], r["step"]))
    write_csv(models, MODEL_COLUMNS, model_csv)
