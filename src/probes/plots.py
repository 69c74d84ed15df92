"""Figures from the probes table: probe error per probe point at chosen checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .aggregate import read_csv  # noqa: E402

METRIC_LABELS = {
    "train_error": "train prediction error",
    "val_error": "validation prediction error",
    "test_error": "test prediction error",
}


def error_by_point(rows: list[dict], step: int, metric: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Probe points in layer order, and the mean and standard deviation of ``metric`` over repeats."""
    at_step = [r for r in rows if int(r["step"]) == step]
    if not at_step:
        raise ValueError(f"no probes at step {step}; steps present: {sorted({int(r['step']) for r in rows})}")
    order = sorted({(int(r["layer_index"]), r["point"]) for r in at_step})
    values = [[float(r[metric]) for r in at_step if r["point"] == p] for _, p in order]
    mean = np.array([np.nanmean(v) if np.isfinite(v).any() else np.nan for v in values])
    std = np.array([np.nanstd(v) if np.isfinite(v).any() else np.nan for v in values])
    return [p for _, p in order], mean, std


def plot_error_by_point(
    probes_csv: Path, steps: list[int], panels: list[str], metric: str, outputs: list[Path], dpi: int = 150, title: str = ""
) -> None:
    """One bar chart per step, side by side, sharing the y axis; saved to every path in ``outputs``."""
    rows = read_csv(probes_csv)
    fig, axes = plt.subplots(1, len(steps), figsize=(5.5 * len(steps), 4.2), sharey=True, squeeze=False)
    for ax, step, panel in zip(axes[0], steps, panels):
        names, mean, std = error_by_point(rows, step, metric)
        x = np.arange(len(names))
        has_spread = np.nan_to_num(std).any()
        ax.bar(x, np.nan_to_num(mean), yerr=std if has_spread else None, color="tab:blue", capsize=3)
        for xi, m in zip(x, mean):
            ax.annotate("n/a" if np.isnan(m) else f"{100 * m:.2f}%", (xi, np.nan_to_num(m)), ha="center", va="bottom",
                        fontsize=7, xytext=(0, 2), textcoords="offset points")  # fmt: skip
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
        ax.set_title(f"{panel}\n(step {step})", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(METRIC_LABELS[metric])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    for out in map(Path, outputs):
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f"{out.stem}.part{out.suffix}")
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, out)
    plt.close(fig)
