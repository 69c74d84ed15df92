"""Figures and animations from the probes table: probe error per probe point.

Errors are drawn in percent throughout (axis, bar labels, chance line); activation norms on a log
scale in plain numbers. Each figure is titled with its experiment, each panel with its step, and
its legend (chance, marked layers, flagged probes) is drawn once, below the panels.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import animation
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, PercentFormatter

from .atomic import atomic_output
from .files import read_csv

METRIC_NAMES = {
    "train_error": "train prediction error",
    "val_error": "validation prediction error",
    "test_error": "test prediction error",
    "activation_norm": "mean activation norm",
}
MAX_LABELS = 20  # label at most this many probe points by name on an axis
MAX_TICKS = 9  # more points: layer numbers every 2^k layers, at most this many
MARK_COLORS = ["tab:green", "tab:red", "tab:purple", "tab:brown"]
Marks = Sequence[tuple[str, Sequence[str]]]  # (legend label, probe points) per group of marked points


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


def layer_ticks(layers: Sequence[int]) -> list[int]:
    """Positions to tick on an axis of many layers: those whose layer number is a multiple of the
    smallest power of two that gives at most ``MAX_TICKS`` ticks (every 16 of 0..128)."""
    every = 1
    while (max(layers) - min(layers)) / every > MAX_TICKS - 1:
        every *= 2
    return [i for i, layer in enumerate(layers) if layer % every == 0]


def _draw(
    ax, names: list[str], mean: np.ndarray, std: np.ndarray, flagged: np.ndarray, chance: float | None,
    ymax: float | None, layers: Sequence[int] | None = None, marks: Marks = (), source: str = "probes table",
) -> None:  # fmt: skip
    """Bars of ``mean`` per probe point, error bars when repeats spread, a chance line if given,
    marked points' lines, flagged probes' bars hatched; legend entries labelled (not drawn).

    ``ymax`` is the shared limit of an error rate, drawn in percent; ``None`` draws a positive
    quantity (activation norms) on a log scale. ``layers``: each point's layer number (default:
    its position), for the ticks of an axis of many points.
    """
    x = np.arange(len(names))
    spread = np.nan_to_num(std) if np.nan_to_num(std).any() else None
    bars = ax.bar(x, np.nan_to_num(mean), yerr=spread, color="tab:blue", width=0.8,
                  capsize=2 if len(names) <= MAX_LABELS else 0, error_kw={"elinewidth": 0.8})  # fmt: skip
    for bar, flag in zip(bars, flagged, strict=True):
        if flag:
            bar.set(hatch="///", facecolor="tab:orange", edgecolor="k", linewidth=0.3)
    if flagged.any():
        label = "probe flagged (status column: C at the walk's limit, not converged, no fit)"
        bars[int(np.argmax(flagged))].set_label(label)
    if len(names) <= MAX_LABELS:
        top = np.nan_to_num(mean) + (0 if spread is None else spread)  # above the error bar
        for xi, m, t in zip(x, mean, top, strict=True):
            label = "n/a" if np.isnan(m) else (f"{m:.3g}" if ymax is None else f"{100 * m:.2f}%")
            ax.annotate(label, (xi, t), ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                        textcoords="offset points")  # fmt: skip
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
        ax.set_xlabel("probe point")
        for (_, points), color in zip(marks, MARK_COLORS, strict=False):
            for tick, name in zip(ax.get_xticklabels(), names, strict=True):
                if name in points:
                    tick.set(color=color, fontweight="bold")
    else:
        layers = list(x) if layers is None else list(layers)
        ticks = layer_ticks(layers)
        ax.set_xticks(ticks, [str(layers[i]) for i in ticks], fontsize=8)
        ax.set_xlabel("layer (0 = input)")
    ax.set_xlim(-0.8, len(names) - 0.2)
    for (label, points), color in zip(marks, MARK_COLORS, strict=False):
        unknown = [p for p in points if p not in names]
        if unknown:
            raise ValueError(f"{source}: marked points {unknown} ({label}) are not among its probe points {names}")
        at = [names.index(p) for p in points]
        for i, xi in enumerate(at):
            ax.axvline(xi, color=color, linestyle="--", linewidth=1, zorder=0.5, label=label if i == 0 else None)
        ax.plot(at, [1.0] * len(at), "v", color=color, markersize=6, transform=ax.get_xaxis_transform(), clip_on=False)
    if chance is not None:
        ax.axhline(chance, color="k", linestyle=":", linewidth=1, label=f"chance ({100 * chance:g}%)")
    if ymax is None:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_ylim(0, ymax)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    ax.grid(axis="y", alpha=0.3)


def _legend(fig, axes) -> None:
    """One legend for the figure, below its panels: each label once, whichever panel drew it."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    entries = dict(sorted(entries.items(), key=lambda e: e[0].startswith("probe flagged")))  # flagged last
    if entries:
        entry_inches = 0.5 + 0.06 * max(map(len, entries))  # at fontsize 8
        ncols = max(1, min(len(entries), int(fig.get_figwidth() // entry_inches)))
        fig.legend(entries.values(), entries.keys(), loc="outside lower center", ncols=ncols, fontsize=8,
                   frameon=False)  # fmt: skip


def _ymax(rows: list[dict], metric: str, chance: float | None) -> float | None:
    """A shared y limit for error rates (``None``, a log scale, for activation norms)."""
    if metric == "activation_norm":
        return None
    values = [float(r[metric]) for r in rows if np.isfinite(float(r[metric]))]
    return 1.1 * max(values + [chance or 0.0, 1e-3])


def _axis_label(metric: str) -> str:
    return f"{METRIC_NAMES[metric]} ({'log scale' if metric == 'activation_norm' else '%'})"


def _title(rows: list[dict], metric: str, width_inches: float) -> str:
    """The experiment and what is drawn: one line if it fits the figure's width, else two."""
    experiments = ", ".join(sorted({r["experiment"] for r in rows}))
    probe = "" if metric == "activation_norm" else " of the linear probe"
    what = f"{METRIC_NAMES[metric]}{probe} at every probe point"
    return f"{experiments}: {what}" if len(experiments) + len(what) < 9 * width_inches else f"{experiments}\n{what}"


def _layers(rows: list[dict], names: list[str]) -> list[int]:
    index = {r["point"]: int(r["layer_index"]) for r in rows}
    return [index[p] for p in names]


def _save(fig, outputs: list[Path], **kwargs) -> None:
    for out in outputs:
        with atomic_output(out) as tmp:
            fig.savefig(tmp, **kwargs)


def error_figure(
    rows: list[dict], steps: list[int], panels: list[str], metric: str, chance: float | None = None,
    marks: Marks = (), source: str = "probes table",
) -> plt.Figure:  # fmt: skip
    """One bar chart per step, side by side, sharing the y axis, under the experiment's title."""
    fig, axes = plt.subplots(1, len(steps), figsize=(5.5 * len(steps), 4.6), sharey=True, squeeze=False,
                             layout="constrained")  # fmt: skip
    ymax = _ymax([r for r in rows if int(r["step"]) in steps], metric, chance)
    for ax, step, panel in zip(axes[0], steps, panels, strict=True):
        names, mean, std, flagged = error_by_point(rows, step, metric, source)
        _draw(ax, names, mean, std, flagged, chance, ymax, _layers(rows, names), marks, source)
        ax.set_title(f"{panel}\n(step {step})", fontsize=10, pad=8)
    axes[0][0].set_ylabel(_axis_label(metric))
    fig.suptitle(_title(rows, metric, fig.get_figwidth()), fontsize=11)
    _legend(fig, axes[0])
    return fig


def plot_error_by_point(
    probes_csv: Path, steps: list[int], panels: list[str], metric: str, outputs: list[Path],
    dpi: int = 150, chance: float | None = None, marks: Marks = (),
) -> None:  # fmt: skip
    """``error_figure`` of a probes table, saved to every path in ``outputs``."""
    fig = error_figure(read_csv(probes_csv), steps, panels, metric, chance, marks, str(probes_csv))
    _save(fig, outputs, dpi=dpi)
    plt.close(fig)


def animation_figure(
    rows: list[dict], model_rows: list[dict], metric: str, chance: float | None = None, marks: Marks = (),
    source: str = "probes table",
) -> tuple[plt.Figure, Callable[[int], None], int]:  # fmt: skip
    """A figure, the function drawing its frame ``i`` (0-based) and the number of frames: one per
    checkpoint, ``metric`` per probe point, titled with the step, ``frame k/N`` and the model's own
    training loss and test accuracy, under the experiment's title."""
    model = {(int(m["repeat"]), int(m["step"])): m for m in model_rows}
    steps = sorted({int(r["step"]) for r in rows})
    ymax = _ymax(rows, metric, chance)
    fig, ax = plt.subplots(figsize=(8, 4.6), layout="constrained")
    fig.suptitle(_title(rows, metric, fig.get_figwidth()), fontsize=11)

    def frame(i: int) -> None:
        ax.clear()
        for legend in list(fig.legends):
            legend.remove()
        names, mean, std, flagged = error_by_point(rows, steps[i], metric, source)
        _draw(ax, names, mean, std, flagged, chance, ymax, _layers(rows, names), marks, source)
        stats = [model[k] for k in model if k[1] == steps[i]]
        loss = np.mean([float(m["train_loss"]) for m in stats])
        acc = np.mean([float(m["test_acc"]) for m in stats])
        ax.set_title(f"step {steps[i]} (frame {i + 1}/{len(steps)}): model train loss {loss:.3f}, "
                     f"test accuracy {100 * acc:.2f}%", fontsize=10, pad=8)  # fmt: skip
        ax.set_ylabel(_axis_label(metric))
        _legend(fig, [ax])

    return fig, frame, len(steps)


def animate_error_by_point(
    probes_csv: Path, model_csv: Path, metric: str, outputs: list[Path], fps: float = 2, dpi: int = 100,
    chance: float | None = None, marks: Marks = (),
) -> None:  # fmt: skip
    """``animation_figure``'s frames of a probes and a model table. ``.gif`` via Pillow, ``.mp4`` via ffmpeg."""
    fig, frame, n = animation_figure(read_csv(probes_csv), read_csv(model_csv), metric, chance, marks,
                                     str(probes_csv))  # fmt: skip
    anim = animation.FuncAnimation(fig, frame, frames=n)
    for out in map(Path, outputs):
        writer = animation.PillowWriter(fps=fps) if out.suffix == ".gif" else animation.FFMpegWriter(fps=fps)
        with atomic_output(out) as tmp:
            anim.save(tmp, writer=writer, dpi=dpi)
    plt.close(fig)


def have_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None
