"""The probe-solver benchmark's scoring (benchmarks/probe_benchmark.py): its float64 objective is
scikit-learn's on standardised features, and the tolerance it reads off a trace is where scipy's
L-BFGS-B would stop. No timing is checked."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
from conftest import REPO
from sklearn.linear_model import LogisticRegression

from probes.estimator import unstandardise
from probes.solver import Rows, feature_stats

spec = importlib.util.spec_from_file_location("probe_benchmark", REPO / "benchmarks" / "probe_benchmark.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def problem(n=600, d=12, k=4, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, d)) * rng.uniform(0.1, 10, d) + rng.uniform(-5, 5, d)).astype(np.float32)
    y = (x @ rng.standard_normal((d, k)) + rng.standard_normal((n, k))).argmax(1)
    return x, y


def test_objective_is_scikit_learns_on_standardised_features():
    x, y = problem()
    mean, scale, _ = feature_stats(Rows(x), False)
    xs = (x.astype(np.float64) - mean) / scale
    C = 0.05
    clf = LogisticRegression(C=C, tol=1e-10, max_iter=5000).fit(xs, y)
    p = clf.predict_proba(xs)
    expected = -np.mean(np.log(p[np.arange(len(y)), y])) + np.sum(clf.coef_**2) / (2 * C * len(y))
    got = bench.std_objective(x, y, clf.coef_, clf.intercept_, mean, scale, C)
    assert got == pytest.approx(expected, rel=1e-12)
    raw = unstandardise(clf.coef_, clf.intercept_, mean, scale)
    assert bench.objective(x, y, *raw, mean, scale, C) == pytest.approx(expected, rel=1e-9)
    _, _, gw, gb = bench.std_eval(x, y, clf.coef_, clf.intercept_, mean, scale, grad=True)
    assert np.abs(gw + clf.coef_ / (C * len(y))).max() < 1e-7 and np.abs(gb).max() < 1e-7  # at the optimum


def test_trace_stops_match_a_run_at_that_tol(tmp_path):
    """A trace of one tight run (objective, max |g| per iterate) predicts a looser run's stop exactly."""
    x, y = problem(seed=1)
    xs, _, _ = bench.standardised(x.copy())
    import scipy.optimize

    original = scipy.optimize.minimize
    trace = bench.Trace(0.0)
    try:
        trace.patch(scipy.optimize)
        tight = bench.sklearn_fit(xs, y, 1.0, 1e-8, 10000)
    finally:
        scipy.optimize.minimize = original
    rows = [(t, f, g) for t, f, g, _ in trace.rows]
    assert trace.mismatch == 0 and rows[-1][1] <= rows[0][1]
    for tol in (1e-3, 1e-4, 1e-5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            *_, n_iter = bench.sklearn_fit(xs, y, 1.0, tol, 10000)
        assert bench.stop_index(rows, tol) == n_iter
    f_ref = rows[-1][1]
    tol, stop = bench.tuned_tol(rows, f_ref)
    assert (rows[stop][1] - f_ref) / f_ref <= bench.TARGET_GAP
    looser = [t for t in bench.TOLS if t > tol]
    assert all((rows[bench.stop_index(rows, t)][1] - f_ref) / f_ref > bench.TARGET_GAP for t in looser)
    assert tight[2] == len(rows) - 1
