"""What the refit of a wide, full-rank layer's probe costs, by solver: L-BFGS memory and truncated Newton.

Usage: OMP_NUM_THREADS=1 python benchmarks/wide_layer_solvers.py ACTIVATIONS.h5 POINT C [--rows N] [--methods ...]

On the first N training rows of POINT (all by default), as the probe's final refit
does: a cold L-BFGS fit to the walk's rough tolerance, then from there to ``tol``
1e-5 by (1) ``fit_logistic`` as the project runs it (scipy L-BFGS, memory 10), (2)
the same with memory 30, (3) scipy's ``trust-krylov`` (a truncated Newton method
with exact Hessian-vector products, each one pass over the rows like an objective
evaluation). Prints per method the iterations, the passes over the rows
(objective-and-gradient evaluations plus Hessian-vector products), CPU seconds and
the relative gap of its objective to the lowest any reached; first, the CPU time of
one objective-and-gradient evaluation against one plain read of the rows.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from scipy.optimize import minimize

from probes import solver
from probes.activations import open_point

METHODS = ["lbfgs10", "lbfgs30", "trust-krylov"]


def hessian_product(rows: solver.Rows, theta, v, mean, scale, lam: float, k: int) -> np.ndarray:
    """Hessian of the multinomial objective at ``theta`` times ``v`` (standardised ``W`` then ``b``)."""
    d, n = rows.d, rows.n
    w, b, vw, vb = theta[: d * k].reshape(d, k), theta[d * k :], v[: d * k].reshape(d, k), v[d * k :]
    ws, vs = (w / scale[:, None]).astype(np.float32), (vw / scale[:, None]).astype(np.float32)
    out, out_b = np.zeros((d, k)), np.zeros(k)
    for _, block in rows:
        block = block - mean.astype(np.float32)
        z = block @ ws + b.astype(np.float32)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        dz = block @ vs + vb.astype(np.float32)
        r = p * (dz - (p * dz).sum(axis=1, keepdims=True))
        out += block.T @ r
        out_b += r.sum(axis=0, dtype=np.float64)
    return np.concatenate([(out / scale[:, None] / n + lam * vw).ravel(), out_b / n])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("activations")
    ap.add_argument("point")
    ap.add_argument("C", type=float)
    ap.add_argument("--rows", type=int, default=0, help="first N training rows (0: all)")
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS, help="which refits (default: all)")
    a = ap.parse_args()
    with open_point(a.activations, "train", a.point, {}) as (train, labels):
        n = a.rows or train.shape[0]
        x, y = np.asarray(train[:n], np.float32), np.asarray(labels[:n])
    rows = solver.Rows(x)
    mean, scale, _ = solver.feature_stats(rows, False)
    k, lam, d = len(np.unique(y)), 1.0 / (a.C * n), x.shape[1]
    if k == 2:
        raise SystemExit("binary probes: not covered (the Hessian product is the multinomial one)")
    passes = 0
    loss_grad = solver._loss_grad

    def counted(*args, **kw):
        nonlocal passes
        passes += 1
        return loss_grad(*args, **kw)

    solver._loss_grad = counted  # fit_logistic looks it up at call time
    w0 = np.random.default_rng(0).normal(size=(d, k)) * 1e-3
    t0 = time.process_time()
    x.sum(dtype=np.float32)
    read = time.process_time() - t0
    t0 = time.process_time()
    loss_grad(rows, y, w0, np.zeros(k), mean, scale, False)
    print(f"{a.point} {x.shape}, C={a.C:g}: one evaluation {time.process_time() - t0:.2f} s CPU, "
          f"one read {read:.2f} s ({4 * n * d * k / 1e9:.1f} GFLOP an evaluation)")  # fmt: skip

    def lbfgs(memory: int) -> Callable:
        def run(start):
            minimize_ = solver.minimize
            solver.minimize = lambda *args, **kw: minimize_(
                *args, **{**kw, "options": {**kw["options"], "maxcor": memory}}
            )
            try:
                _, _, nit, _, f, _ = solver.fit_logistic(rows, y, k, lam, mean, scale, solver.Preconditioner(),
                                                      init=start, tol=1e-5, max_iter=5000)  # fmt: skip
            finally:
                solver.minimize = minimize_
            return nit, f

        return run

    def trust_krylov(start):
        def fg(theta):
            w, b = theta[: d * k].reshape(d, k), theta[d * k :]
            loss, gw, gb = counted(rows, y, w, b, mean, scale, False)
            return loss + 0.5 * lam * float(np.sum(w * w)), np.concatenate([(gw + lam * w).ravel(), gb])

        def hessp(theta, v):
            nonlocal passes
            passes += 1
            return hessian_product(rows, theta, v, mean, scale, lam, k)

        theta = np.concatenate([start[0].ravel(), start[1]])
        res = minimize(fg, theta, jac=True, hessp=hessp, method="trust-krylov", options={"gtol": 1e-10, "maxiter": 30})
        return res.nit, float(res.fun)

    passes, t0 = 0, time.process_time()
    w, b, nit, _, f, _ = solver.fit_logistic(rows, y, k, lam, mean, scale, solver.Preconditioner(), tol=1e-3)
    print(f"rough start (tol 1e-3, cold): {nit} iterations, {passes} passes, {time.process_time() - t0:.0f} s")
    results = []
    methods = {"lbfgs10": ("L-BFGS, memory 10 (the project's)", lbfgs(10)), "lbfgs30": ("L-BFGS, memory 30", lbfgs(30)),
               "trust-krylov": ("trust-krylov (Hessian-vector products)", trust_krylov)}  # fmt: skip
    for name, run in (methods[m] for m in a.methods):
        passes, t0 = 0, time.process_time()
        nit, f = run((w, b))
        results.append((name, nit, passes, time.process_time() - t0, f))
        print(f"  {name}: {nit} iterations, {passes} passes, {results[-1][3]:.0f} s, objective {f:.10g}", flush=True)
    best = min(r[4] for r in results)
    print("\n| method | iterations | passes | CPU s | relative gap |\n|---|---:|---:|---:|---:|")
    for name, nit, p, sec, f in results:
        print(f"| {name} | {nit} | {p} | {sec:.0f} | {(f - best) / best:.1e} |")


if __name__ == "__main__":
    main()
