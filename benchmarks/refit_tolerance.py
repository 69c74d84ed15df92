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
from probe_benchmark import objective  # this directory: the raw-feature model's objective
from sklearn.linear_model import LogisticRegression

from probes.activations import read_point
from probes.config import Experiment, load_yaml
from probes.estimator import LinearProbe, unstandardise
from probes.solver import Rows, feature_stats


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
        y_index = np.searchsorted(np.unique(y), y)
        ref = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit((x - mean) / scale, y)
        best = objective(x, y_index, *unstandardise(ref.coef_, ref.intercept_, mean, scale), mean, scale, C)
        cells = []
        for probe, seconds in fits.values():
            gap = (objective(x, y_index, probe.coef_, probe.intercept_, mean, scale, C) - best) / best
            cells.append(f"{seconds:.1f} s, {gap:.1e} (C={probe.C_:g})")
        print(f"| {point} | {C:g} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
