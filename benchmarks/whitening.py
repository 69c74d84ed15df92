"""Whitened against plain standardised L-BFGS on one probe point: CPU seconds to a relative gap of 1e-4.

Usage: OMP_NUM_THREADS=1 python benchmarks/whitening.py ACTIVATIONS.h5 POINT C [--reference F] [--rows N]
    [--tol 1e-5] [--repeats 2]

A cold fit at C on the point's training rows (the first N; all by default), as a
probe's first fit runs it (``solver.fit_logistic``), preconditioned by the whitening of
the feature covariance (``whiten: always``) and by nothing (plain standardisation:
scikit-learn's ``lbfgs`` algorithm, as ``whiten: curvature`` fits a point too wide for the
loss Hessian). Each method's clock starts before its feature statistics (the covariance
and its eigendecomposition count against whitening). The gap of an evaluation is
``(f - F) / F``, ``F`` the reference objective given (``probe_benchmark.py``'s
``reference.csv``: float64 scikit-learn at tol 1e-10), else the lowest either method
reached. Prints per method and repeat: evaluations, iterations, the gap at its stop,
its CPU seconds, and the CPU seconds and iteration at which it first came within 1e-4.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from probes import solver
from probes.activations import open_point


def fit(rows: solver.Rows, y: np.ndarray, lam: float, whiten: bool, tol: float) -> tuple[list, tuple, float]:
    """One cold fit; its trace of (CPU seconds, objective) per evaluation, the result, its CPU seconds."""
    t0 = time.process_time()
    mean, scale, cov = solver.feature_stats(rows, whiten)
    precond = solver.Preconditioner(cov=cov) if whiten else solver.Preconditioner()
    trace, loss_grad = [], solver._loss_grad

    def counted(rows_, y_, w, b, *args, **kw):
        out = loss_grad(rows_, y_, w, b, *args, **kw)
        trace.append((time.process_time() - t0, out[0] + 0.5 * lam * float(np.sum(w * w))))
        return out

    solver._loss_grad = counted  # fit_logistic looks it up at call time
    try:
        result = solver.fit_logistic(rows, y, int(y.max()) + 1, lam, mean, scale, precond, tol=tol, max_iter=5000)
    finally:
        solver._loss_grad = loss_grad
    return trace, result, time.process_time() - t0


def point_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments of a benchmark of fits on one point: ACTIVATIONS.h5 POINT C [--reference F]
    [--rows N] [--tol T]."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("activations")
    ap.add_argument("point")
    ap.add_argument("C", type=float)
    ap.add_argument("--reference", type=float, help="the optimum's objective (default: the lowest reached)")
    ap.add_argument("--rows", type=int, default=0, help="first N training rows (0: all)")
    ap.add_argument("--tol", type=float, default=1e-5, help="fit_logistic's tol (default: the probes' 1e-5)")
    return ap


def training_rows(a: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """The point's first ``a.rows`` training rows (all for 0), float32, and their labels as class indices."""
    with open_point(a.activations, "train", a.point, {}) as (train, labels):
        n = a.rows or train.shape[0]
        return np.asarray(train[:n], np.float32), np.unique(np.asarray(labels[:n]), return_inverse=True)[1]


def main() -> None:
    ap = point_parser(__doc__)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    x, y = training_rows(a)
    n = len(y)
    rows, lam = solver.Rows(x), 1.0 / (a.C * n)
    runs = [(whiten, *fit(rows, y, lam, whiten, a.tol)) for _ in range(a.repeats) for whiten in (False, True)]
    best = a.reference or min(f for _, trace, _, _ in runs for _, f in trace)
    print(f"{a.point} ({x.shape[1]} wide, {n} rows), C={a.C:g}, tol {a.tol:g}, reference objective {best:.10g}")
    for whiten, trace, result, cpu in runs:
        hit = next(((t, i) for i, (t, f) in enumerate(trace) if (f - best) / best <= 1e-4), None)
        to_gap = "never" if hit is None else f"{hit[0]:.2f} s (evaluation {hit[1]})"
        print(
            f"  {'whitened' if whiten else 'plain':8s}  {len(trace):5d} evaluations, {result.n_iter:5d} iterations, "
            f"gap at stop {(result.objective - best) / best:.1e}, {cpu:.2f} s; to 1e-4: {to_gap}"
        )


if __name__ == "__main__":
    main()
