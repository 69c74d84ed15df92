"""An independent re-fit of pipeline probes: scikit-learn's LogisticRegression in float64 at a
tight tolerance on the standardised rows (StandardScaler), at every C of a grid, against the
probe the pipeline chose (its JSON record): objective at the probe's C, errors, the validation
optimum over the grid.

Run:  python benchmarks/probe_reference.py ACTIVATIONS.h5 PROBE_JOB.json POINT [--Cs 1e-4 ... 1e3]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from probes.activations import read_point


def objective(clf: LogisticRegression, xs: np.ndarray, y: np.ndarray, C: float) -> float:
    z = xs @ clf.coef_.T + clf.intercept_
    z = np.hstack([np.zeros_like(z), z]) if z.shape[1] == 1 else z
    z -= z.max(axis=1, keepdims=True)
    nll = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), np.searchsorted(clf.classes_, y)]
    return float(nll.mean() + np.sum(clf.coef_**2) / (2 * C * len(y)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("activations")
    ap.add_argument("probe_json")
    ap.add_argument("point")
    ap.add_argument("--Cs", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0])
    ap.add_argument("--tol", type=float, default=1e-8)
    a = ap.parse_args()
    probe = next(r for r in json.load(open(a.probe_json)) if r["point"] == a.point)
    splits = {s: read_point(a.activations, s, a.point) for s in ("train", "val", "test")}
    x, y = splits["train"]
    scaler = StandardScaler().fit(x.astype(np.float64))
    xs = {s: scaler.transform(v[0].astype(np.float64)) for s, v in splits.items()}
    std = np.sqrt(scaler.var_)
    print(
        f"{a.point}: {x.shape}, feature std median {np.median(std):.3g} (min {std.min():.3g}), mean row norm "
        f"{np.linalg.norm(x.astype(np.float64), axis=1).mean():.3g}"
    )
    print(
        f"pipeline: C={probe['C']:g} ({probe.get('status', '?')}, C_limit {probe.get('C_limit', '?')!r}) train "
        f"{probe['train_error']:.4f} val {probe['val_error']:.4f} test {probe['test_error']:.4f}, train loss "
        f"{probe['train_loss']:.4f}, {probe['n_iter']} iterations"
    )
    rows = []
    for C in sorted(set(a.Cs) | {probe["C"]}):
        t0 = time.process_time()
        clf = LogisticRegression(C=C, tol=a.tol, max_iter=100000).fit(xs["train"], y)
        err = {s: float(np.mean(clf.predict(xs[s]) != splits[s][1])) for s in xs}
        rows.append((C, err))
        print(
            f"reference C={C:g}: train {err['train']:.4f} val {err['val']:.4f} test {err['test']:.4f}, objective "
            f"{objective(clf, xs['train'], y, C):.6f}, {int(np.max(clf.n_iter_))} iterations, "
            f"{time.process_time() - t0:.1f} s CPU"
        )
    best = min(rows, key=lambda r: (r[1]["val"], r[0]))
    print(f"reference validation optimum: C={best[0]:g} (test {best[1]['test']:.4f})")


if __name__ == "__main__":
    main()
