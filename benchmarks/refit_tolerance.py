"""How far a probe ends from its optimum at two refit tolerances.

Usage: python benchmarks/refit_tolerance.py ACTIVATIONS.h5 EXPERIMENT POINT [POINT ...]
(run with OMP_NUM_THREADS=1 to match a probe job). For each point: one
``LinearProbe`` fit with EXPERIMENT's probe settings from config.yaml at ``tol``
1e-5 and at 1e-4, its wall time, chosen C and the relative objective gap of the
stored (raw-feature) probe against float64 scikit-learn at ``tol=1e-10`` at that C.
Prints a Markdown table.
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression

from probes.activations import read_point
from probes.config import Experiment, load_yaml
from probes.probe import LinearProbe
from probes.solver import Rows, feature_stats


def objective(coef: np.ndarray, intercept: np.ndarray, xs: np.ndarray, y_index: np.ndarray, C: float) -> float:
    """scikit-learn's objective of a standardised-feature model ``(d, k)``, in float64."""
    z = xs @ coef + intercept
    if z.shape[1] == 1:
        z = np.hstack([np.zeros_like(z), z])
    z -= z.max(1, keepdims=True)
    nll = np.log(np.exp(z).sum(1)) - z[np.arange(len(y_index)), y_index]
    return float(nll.mean() + (coef**2).sum() / (2 * C * len(y_index)))


def main(path: str, experiment: str, points: list[str]) -> None:
    warnings.filterwarnings("ignore")
    exp = Experiment(experiment, load_yaml("config.yaml"))
    print("| point | C | tol 1e-5: time, gap | tol 1e-4: time, gap |\n|---|---:|---|---|")
    for point in points:
        x, y = read_point(path, "train", point)
        x_val, y_val = read_point(path, "val", point)
        settings = exp.probe_settings(point)
        settings.pop("memory_budget_mb", None)
        fits = {}
        for tol in (1e-5, 1e-4):
            t0 = time.time()
            probe = LinearProbe(**{**settings, "tol": tol}).fit(x, y, x_val, y_val)
            fits[tol] = (probe, time.time() - t0)
        C = fits[1e-5][0].C_
        mean, scale, _ = feature_stats(Rows(x), False)
        xs = (x - mean) / scale
        y_index = np.searchsorted(np.unique(y), y)
        ref = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(xs, y)
        best = objective(ref.coef_.T, ref.intercept_, xs, y_index, C)
        cells = []
        for probe, seconds in fits.values():
            gap = (objective(probe.coef_.T * scale[:, None], probe.intercept_ + probe.coef_ @ mean, xs, y_index, C)
                   - best) / best  # fmt: skip
            cells.append(f"{seconds:.1f} s, {gap:.1e} (C={probe.C_:g})")
        print(f"| {point} | {C:g} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
