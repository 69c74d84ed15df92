"""Figures and animations from the probes table: probe error per probe point."""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import animation

from .atomic import atomic_output
from .files import read_csv

METRIC_LABELS = {
    "train_error": "train prediction error",
    "val_error": "validation prediction error",
    "test_error": "test prediction error",
    "activation_norm": "mean activation norm (log scale)",
}
MAX_LABELS = 20  # label at most this many probe points on an axis


def error_by_point(
    rows: list[dict], step: int, metric: str, source: str = "probes table"
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Probe points in layer order, the mean and standard deviation of ``metric`` over repeats,
    and whether any repeat's probe there is flagged (a ``status`` other than ``ok``).

    Non-finite values (a probe on NaN activations, say) are left out of both; a
    point with no finite value gets NaN.
    """
    at_step = [r for r in rows if int(r["step"]) == step]
    if not at_step:
        raise ValueError(f"{source}: no probes at step {step}; steps present: {sorted({int(r['step']) for r in rows})}")
    order = sorted({(int(r["layer_index"]), r["point"]) for r in at_step})
    values = [np.array([float(r[metric]) for r in at_step if r["point"] == p]) for _, p in order]
    finite = [v[np.isfinite(v)] for v in values]
    mean = np.array([v.mean() if len(v) else np.nan for v in finite])
    std = np.array([v.std() if len(v) else np.nan for v in finite])
    flagged = np.array([any(r.get("status", "ok") != "ok" for r in at_step if r["point"] == p) for _, p in order])
    return [p for _, p in order], mean, std, flagged


def _draw(
    ax, names: list[str], mean: np.ndarray, std: np.ndarray, flagged: np.ndarray, chance: float | None,
    ymax: float | None,
) -> None:  # fmt: skip
    """Bars of ``mean`` per probe point, error bars when repeats spread, a chance line if given;
    flagged probes' bars hatched, with a legend entry.

    ``ymax=None`` draws a positive quantity (activation norms) on a log scale.
    """
    x = np.arange(len(names))
    bars = ax.bar(x, np.nan_to_num(mean), yerr=std if np.nan_to_num(std).any() else None, color="tab:blue",
                  width=0.8, capsize=2 if len(names) <= MAX_LABELS else 0, error_kw={"elinewidth": 0.8})  # fmt: skip
    for bar, flag in zip(bars, flagged, strict=True):
        if flag:
            bar.set(hatch="///", facecolor="tab:orange", edgecolor="k", linewidth=0.3)
    if flagged.any():
        bars[int(np.argmax(flagged))].set_label("probe flagged (status column: C at the walk's limit, not converged, no fit)")
    if len(names) <= MAX_LABELS:
        for xi, m in zip(x, mean, strict=True):
            label = "n/a" if np.isnan(m) else (f"{m:.2g}" if ymax is None else f"{100 * m:.2f}%")
            ax.annotate(label, (xi, np.nan_to_num(m)), ha="center",
                        va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")  # fmt: skip
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    else:
        every = int(np.ceil(len(names) / MAX_LABELS))
        ax.set_xticks(x[::every], [str(i) for i in x[::every]], fontsize=8)
        ax.set_xlabel("layer (0 = input)")
    if chance is not None:
        ax.axhline(chance, color="k", linestyle=":", linewidth=1, label=f"chance ({chance:g})")
    if chance is not None or flagged.any():
        ax.legend(loc="upper left", fontsize=8)
    if ymax is None:
        ax.set_yscale("log")
    else:
        ax.set_ylim(0, ymax)
    ax.grid(axis="y", alpha=0.3)


def _ymax(rows: list[dict], metric: str, chance: float | None) -> float | None:
    """A shared y limit for error rates (``None``, a log scale, for activation norms)."""
    if metric == "activation_norm":
        return None
    values = [float(r[metric]) for r in rows if np.isfinite(float(r[metric]))]
    return 1.1 * max(values + [chance or 0.0, 1e-3])


def _save(fig, outputs: list[Path], **kwargs) -> None:
    for out in outputs:
        with atomic_output(out) as tmp:
            fig.savefig(tmp, **kwargs)


def plot_error_by_point(
    probes_csv: Path, steps: list[int], panels: list[str], metric: str, outputs: list[Path],
    dpi: int = 150, chance: float | None = None,
) -> None:  # fmt: skip
    """One bar chart per step, side by side, sharing the y axis; saved to every path in ``outputs``."""
    rows = read_csv(probes_csv)
    fig, axes = plt.subplots(1, len(steps), figsize=(5.5 * len(steps), 4.2), sharey=True, squeeze=False)
    ymax = _ymax([r for r in rows if int(r["step"]) in steps], metric, chance)
    for ax, step, panel in zip(axes[0], steps, panels, strict=True):
        _draw(ax, *error_by_point(rows, step, metric, str(probes_csv)), chance, ymax)
        ax.set_title(f"{panel}\n(step {step})", fontsize=10)
    axes[0][0].set_ylabel(METRIC_LABELS[metric])
    fig.tight_layout()
    _save(fig, outputs, dpi=dpi)
    plt.close(fig)


def animate_error_by_point(
    probes_csv: Path, model_csv: Path, metric: str, outputs: list[Path], fps: float = 2, dpi: int = 100
) -> None:
    """One frame per checkpoint: ``metric`` per probe point, titled with the step and the
    model's own training loss and test accuracy. ``.gif`` via Pillow, ``.mp4`` via ffmpeg."""
    rows = read_csv(probes_csv)
    model = {(int(m["repeat"]), int(m["step"])): m for m in read_csv(model_csv)}
    steps = sorted({int(r["step"]) for r in rows})
    ymax = _ymax(rows, metric, None)
    fig, ax = plt.subplots(figsize=(8, 4.2))

    def frame(i: int) -> None:
        ax.clear()
        _draw(ax, *error_by_point(rows, steps[i], metric, str(probes_csv)), None, ymax)
        stats = [model[k] for k in model if k[1] == steps[i]]
        loss = np.mean([float(m["train_loss"]) for m in stats])
        acc = np.mean([float(m["test_acc"]) for m in stats])
        ax.set_title(f"step {steps[i]}: model train loss {loss:.3f}, test accuracy {100 * acc:.2f}%", fontsize=10)
        ax.set_ylabel(METRIC_LABELS[metric])
        fig.tight_layout()

    anim = animation.FuncAnimation(fig, frame, frames=len(steps))
    for out in map(Path, outputs):
        writer = animation.PillowWriter(fps=fps) if out.suffix == ".gif" else animation.FFMpegWriter(fps=fps)
        with atomic_output(out) as tmp:
            anim.save(tmp, writer=writer, dpi=dpi)
    plt.close(fig)


def have_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None
