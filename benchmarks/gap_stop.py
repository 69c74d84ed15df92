"""The proven-gap stop (``gap_tol``) against the gradient tolerance alone, on one probe point.

Usage: OMP_NUM_THREADS=1 python benchmarks/gap_stop.py ACTIVATIONS.h5 POINT C [--reference F] [--rows N]
    [--tol 1e-5] [--gap-tols none,1e-4,1e-5] [--whiten]

One cold fit at C on the point's training rows (the first N; all by default) per
``gap_tol`` (``none``: the gradient tolerance ``tol`` alone), as ``solver.fit_logistic``
runs a probe's fit, plainly standardised (``--whiten``: whitened). Prints per fit its
iterations, CPU seconds, its objective ``f`` at its stop (evaluated in float64) and its
gap ``(f - F) / F``, ``F`` the reference given (``probe_benchmark.py``'s
``reference.csv``: float64 scikit-learn at tol 1e-10), else the lowest any fit reached
(a run with ``--gap-tols none --tol 1e-8`` prints an objective to give as ``--reference``).
"""

from __future__ import annotations

import time

import numpy as np
from probe_benchmark import std_objective  # benchmarks/, the script's directory
from whitening import point_parser, training_rows

from probes import solver


def objective64(x: np.ndarray, y: np.ndarray, w, b, mean, scale, C: float) -> float:
    """The probe's objective at standardised ``(w, b)`` (``(d, k)``, ``(k,)``), in float64."""
    if w.shape[1] == 1:  # binary: class 0 scores 0
        w, b = np.hstack([np.zeros_like(w), w]), np.concatenate([[0.0], b])
    return std_objective(x, y, w.T, b, mean, scale, C)


def main() -> None:
    ap = point_parser(__doc__)
    ap.add_argument("--gap-tols", default="none,1e-4,1e-5", help="comma-separated gap_tol values")
    ap.add_argument("--whiten", action="store_true")
    a = ap.parse_args()
    x, y = training_rows(a)
    n = len(y)
    rows = solver.Rows(x)
    lam = 1.0 / (a.C * n)
    print(f"{a.point} ({x.shape[1]} wide, {n} rows), C={a.C:g}, tol {a.tol:g}, {'whitened' if a.whiten else 'plain'}")
    fits = []
    for text in a.gap_tols.split(","):
        gap_tol = None if text == "none" else float(text)
        t0 = time.process_time()
        mean, scale, cov = solver.feature_stats(rows, a.whiten)
        precond = solver.Preconditioner(cov=cov) if a.whiten else solver.Preconditioner()
        w, b, nit, converged, *_ = solver.fit_logistic(rows, y, int(y.max()) + 1, lam, mean, scale, precond,
                                                      tol=a.tol, max_iter=5000, gap_tol=gap_tol)  # fmt: skip
        cpu = time.process_time() - t0
        fits.append((text, nit, cpu, converged, objective64(x, y, w, b, mean, scale, a.C)))
    reference = a.reference if a.reference is not None else min(f[-1] for f in fits)
    for text, nit, cpu, converged, f in fits:
        print(f"  gap_tol {text:>5}: {nit:5d} iterations, {cpu:7.1f} s CPU, objective {f:.12g}, "
              f"gap {(f - reference) / reference:.1e}{'' if converged else ' (max_iter)'}")  # fmt: skip


if __name__ == "__main__":
    main()
