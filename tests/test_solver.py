"""The preconditioned L-BFGS probe reaches scikit-learn's optimum, in memory and out of core."""

import json
import logging

import h5py
import numpy as np
import pytest
from conftest import activation_file
from sklearn.linear_model import LogisticRegression

from probes.estimator import LinearProbe
from probes.probe import fit_points
from probes.solver import (
    Preconditioner,
    Rows,
    _loss_grad,
    certified_gap,
    feature_stats,
    fit_logistic,
    loss_hessian,
    row_space,
    spans_more_than,
)


def correlated(n, d=30, k=3, seed=0, noise=0.15):
    """Ill-conditioned features (a few strong directions, tiny and offset columns) and noisy labels."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(d, d)) * np.logspace(0, -3, d)[:, None]
    x = (rng.normal(size=(n, d)) @ basis * rng.uniform(1e-3, 10, size=d) + rng.normal(size=d) * 3).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(d, k)) + rng.gumbel(size=(n, k)) * noise * 10, axis=1)
    return x, y


def objective(coef, intercept, x, y, C):
    """scikit-learn's objective (mean loss + ||coef||^2 / (2 C n)) of a model on ``x``, in float64."""
    z = x.astype(np.float64) @ np.asarray(coef, np.float64).T + intercept
    if z.shape[1] == 1:
        z = np.hstack([np.zeros_like(z), z])
    z -= z.max(axis=1, keepdims=True)
    nll = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]
    return nll.mean() + np.sum(np.asarray(coef, np.float64) ** 2) / (2 * C * len(y))


def reference(xs, y, C):
    """scikit-learn's L-BFGS run to a far tighter tolerance than its default, in float64."""
    ref = LogisticRegression(C=C, tol=1e-12, max_iter=20000).fit(xs.astype(np.float64), y)
    return ref, objective(ref.coef_, ref.intercept_, xs, y, C)


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("C", [1e-2, 1.0, 100.0])
def test_every_preconditioner_reaches_scikit_learns_optimum(k, C):
    x, y = correlated(1500, k=k, seed=k)
    rows = Rows(x)
    mean, scale, cov = feature_stats(rows, True)
    xs = (x - mean) / scale
    ref, best = reference(xs, y, C)
    lam = 1 / (C * len(y))
    near = (ref.coef_.T * 0.9, ref.intercept_ * 0.9)  # a warm start, as the C walk gives
    for precond, init in [
        (Preconditioner(), None),
        (Preconditioner(cov=cov), None),
        (Preconditioner(hessian=loss_hessian(x[:500], *near, mean, scale)), near),
    ]:
        w, b, _, converged, f, _ = fit_logistic(rows, y, k, lam, mean, scale, precond, init, tol=1e-6, max_iter=5000)
        assert converged, precond.kind
        gap = (objective(w.T, b, xs, y, C) - best) / best
        assert -1e-6 < gap < 1e-4, (precond.kind, gap)
        assert f == pytest.approx(objective(w.T, b, xs, y, C), rel=1e-5)  # its own objective is the true one
        assert w.shape == ref.coef_.T.shape and b.shape == ref.intercept_.shape  # scikit-learn's layout
        assert np.mean(np.argmax(xs @ ref.coef_.T + ref.intercept_, 1) == np.argmax(xs @ w + b, 1)) > 0.99 or k == 2


@pytest.mark.parametrize("warm", [False, True])
def test_a_fit_never_passes_over_the_rows_twice_at_one_point(warm, monkeypatch):
    """The start (evaluated for the stopping rule) and a restart's point are not evaluated again for scipy."""
    import probes.solver

    points = []

    def recorded_loss_grad(rows, y, w, b, *a, **kw):
        points.append(np.concatenate([np.ravel(w), b]))
        return _loss_grad(rows, y, w, b, *a, **kw)

    monkeypatch.setattr(probes.solver, "_loss_grad", recorded_loss_grad)
    x, y = correlated(1500, k=3, seed=5)
    rows = Rows(x)
    mean, scale, _ = feature_stats(rows, False)
    lam = 1 / len(y)
    start = fit_logistic(rows, y, 3, 10 * lam, mean, scale, Preconditioner(), tol=1e-3) if warm else None
    points.clear()
    fit = fit_logistic(rows, y, 3, lam, mean, scale, Preconditioner(), None if start is None else start[:2], tol=1e-6)
    assert fit.converged and fit.n_iter > 0 and len(points) > fit.n_iter
    dups = [(j, i) for i in range(len(points)) for j in range(i) if np.array_equal(points[i], points[j])]
    assert not dups, (dups, len(points))  # no point twice


def test_a_fit_ended_by_float32_precision_is_converged_and_one_ended_by_max_iter_is_not(monkeypatch, caplog):
    # On 50,000 rows of the 128-layer MLP some refits end with L-BFGS's line search finding no
    # lower objective (status 2, "ABNORMAL"): its float32 evaluation cannot resolve what is left,
    # measured at 4e-9 to 5e-7 of the optimum. Which fits end so depends on rounding (BLAS,
    # threads), so here a fit that reached the optimum is made to end that way.
    import scipy.optimize

    def line_search_end(fun, x0, **kw):
        res = scipy.optimize.minimize(fun, x0, **kw)
        res.status, res.success, res.message = 2, False, "ABNORMAL: "
        return res

    x, y = correlated(1500, k=3, seed=7)
    rows = Rows(x)
    mean, scale, cov = feature_stats(rows, True)
    lam = 1 / len(y)
    converged = fit_logistic(rows, y, 3, lam, mean, scale, Preconditioner(cov=cov), max_iter=3).converged
    assert not converged
    caplog.set_level(logging.INFO, logger="probes")
    monkeypatch.setattr("probes.solver.minimize", line_search_end)
    _, _, n_iter, converged, *_ = fit_logistic(rows, y, 3, lam, mean, scale, Preconditioner(cov=cov))
    assert converged and n_iter < 1000
    assert "the line search found no lower objective" in caplog.text


@pytest.mark.parametrize("k", [2, 4])
def test_the_tiny_losses_of_well_classified_rows_count(k):
    # A near-separable probe's objective is mostly losses of 1e-12..1e-7 per row: in float32,
    # log(1 + share) and p - 1 round them to 0, and L-BFGS stopped 1.3e-4 above the optimum of
    # a 12,544-wide convnet layer. Against float64: loss and gradient to 1e-5 relative.
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 6)).astype(np.float32)
    y = rng.integers(0, k, 400)
    m = k if k > 2 else 1
    w = rng.normal(size=(6, m)) * 0.3
    b = np.zeros(m)
    shift = np.zeros((400, k))
    shift[np.arange(400), y] = rng.uniform(16, 28, 400)  # margins: losses of e^-16 .. e^-28
    x = np.hstack([x, shift.astype(np.float32)])  # one column per class carries the margin
    w = np.vstack([w, np.eye(k)[:, -m:] if k > 2 else np.array([[-1.0], [1.0]])])
    mean, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
    loss, grad_w, grad_b = _loss_grad(Rows(x), y, w, b, mean, scale, k == 2)
    z = x.astype(np.float64) @ w + b
    z = np.hstack([np.zeros((400, 1)), z]) if k == 2 else z
    e = np.exp(z - z.max(1, keepdims=True))
    e[np.arange(400), z.argmax(1)] = 0.0
    share = e.sum(1)  # of the classes other than the top one, in float64
    ref_loss = np.mean(np.log1p(share) - (z - z.max(1, keepdims=True))[np.arange(400), y])
    r = e / (1 + share)[:, None]
    r[np.arange(400), z.argmax(1)] = 1 / (1 + share)
    r[np.arange(400), y] = np.where(z.argmax(1) == y, -share / (1 + share), r[np.arange(400), y] - 1)
    r = r[:, 1:] if k == 2 else r
    assert 0 < ref_loss < 1e-6
    assert abs(loss - ref_loss) < 1e-5 * ref_loss
    ref_grad = x.T.astype(np.float64) @ r / 400
    assert np.abs(grad_w - ref_grad).max() < 1e-5 * np.abs(ref_grad).max()
    assert np.allclose(grad_b, r.mean(0), rtol=1e-5, atol=0)


def noisy(n, d, seed):
    """Isotropic features, three classes, labels from a fixed linear model plus Gumbel noise."""
    w = np.random.default_rng(0).normal(size=(d, 3))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x, np.argmax(x @ w * 3 / np.sqrt(d) + rng.gumbel(size=(n, 3)), axis=1)


def test_a_collapsed_layer_far_from_zero_is_fitted_and_stored_at_the_optimum():
    # A deep layer of the untrainable 128-layer MLP: every column sits 1e4-1e5 standard deviations
    # from zero. Uncentred float32 products (the solver) and a float32 intercept (the stored
    # model) both lost that factor of precision: the probe ended 1e-3 above its optimum.
    x, y = noisy(6000, 40, seed=3)
    xv, yv = noisy(2000, 40, seed=4)
    offset = np.random.default_rng(5).uniform(0.5, 2.0, size=40)
    x, xv = ((offset + 1e-5 * a).astype(np.float32) for a in (x, xv))
    probe = LinearProbe(Cs=[1.0], solver="preconditioned_lbfgs", tol=1e-5, max_iter=1000).fit(x, y, xv, yv)
    mean, scale, _ = feature_stats(Rows(x), False)
    assert np.median(np.abs(mean) / scale) > 1e4
    _, best = reference((x - mean) / scale, y, 1.0)
    coef = probe.coef_ * scale  # the stored raw-feature model, on the standardised features
    intercept = probe.intercept_ + probe.coef_.astype(np.float64) @ mean
    assert (objective(coef, intercept, (x - mean) / scale, y, 1.0) - best) / best < 1e-6  # was 3.5e-4


@pytest.mark.parametrize("solver", ["preconditioned_lbfgs", "lbfgs"])
def test_a_layer_varying_by_float32_ulps_on_a_constant_offset_is_fitted_at_its_optimum(solver):
    # mlp128_skip step 5,000 layer63: feature spreads of ~1e-10 on means of ~1e-3, a few float32 ulps.
    # Such columns were taken for constant (spread within 1e-6 of the mean): the probe saw nothing,
    # stopped at once "converged" at the class prior, train error 66% against the optimum's 3%.
    def collapsed(n, seed):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 3, n)
        centres = np.random.default_rng(0).standard_normal((3, 20))
        return (1e-3 + 3e-10 * (centres[y] + 1.5 * rng.standard_normal((n, 20)))).astype(np.float32), y

    (x, y), (xv, yv) = collapsed(4000, 1), collapsed(2000, 2)
    x64 = x.astype(np.float64)
    mean, scale = x64.mean(axis=0), x64.std(axis=0)
    assert np.all(scale < 1e-9) and np.all(scale / mean < 1e-6)
    xs = (x64 - mean) / scale  # scikit-learn's standardisation, in float64
    ref, best = reference(xs, y, 0.1)
    probe = LinearProbe(Cs=[0.1], solver=solver, tol=1e-5, max_iter=1000).fit(x, y, xv, yv)
    coef, intercept = probe.coef_ * scale, probe.intercept_ + probe.coef_ @ mean
    assert (objective(coef, intercept, xs, y, 0.1) - best) / best < 1e-5  # was 8.4 (0.98 above 0.117)
    assert probe.train_error_ == pytest.approx(np.mean(ref.predict(xs) != y), abs=2e-3)


def test_the_stopping_rule_is_relative_to_the_gradient_at_zero():
    # unstandardised features of 1e-3 (a tiny layer): every gradient is 1e-3 of a unit layer's, so
    # an absolute tolerance was met 40x farther from the optimum (identity preconditioner)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 3000)
    x = (np.random.default_rng(1).standard_normal((3, 10))[y] + 2 * rng.standard_normal((3000, 10))) * 1e-3
    x = x.astype(np.float32)
    C = 1e6
    ref = LogisticRegression(C=C, tol=1e-12, max_iter=100000).fit(x.astype(np.float64), y)
    best = objective(ref.coef_, ref.intercept_, x, y, C)
    probe = LinearProbe(Cs=[C], solver="preconditioned_lbfgs", tol=1e-5, standardize=False, whiten_max_width=0,
                        reduce_rank=False, curvature_max_params=0).fit(x, y, x[:500], y[:500])  # fmt: skip
    assert objective(probe.coef_, probe.intercept_, x, y, C) - best < 2e-5  # 4.7e-6; was 2.0e-4


def collapsed(n, d=128, k=10, seed=0):
    """A deep ReLU layer's rows: one strong direction common to every unit, the classes in weak ones."""
    rng = np.random.default_rng(seed)
    y = rng.integers(k, size=n)
    z = rng.normal(size=(k, 8))[y] + rng.normal(size=(n, 8)) * 0.4
    x = rng.normal(size=(n, 1)) * 5 + z @ rng.normal(size=(8, d)) * 0.3 + rng.normal(size=(n, d)) * 0.05
    return np.maximum(x, 0).astype(np.float32), y


def test_a_warm_fit_at_a_weak_penalty_is_preconditioned_by_the_loss_hessian_and_reaches_the_optimum():
    # The walk's step from C/10 to C on a 128-wide layer. In float32 products the loss Hessian's
    # null direction came out at -4e-6, below this penalty (5e-8): its Cholesky factor failed, the fit
    # ran unpreconditioned and met its gradient tolerance at the start, 0 iterations, 0.9% above the optimum.
    x, y = collapsed(2000)
    rows, C, n = Rows(x), 1e4, len(y)
    mean, scale, cov = feature_stats(rows, True)
    xs = (x - mean) / scale

    def optimum(C: float) -> tuple:
        """The whitened fit, far tighter than the walk's (test_every_preconditioner_reaches_scikit_learns_optimum)."""
        return fit_logistic(rows, y, 10, 1 / (C * n), mean, scale, Preconditioner(cov=cov), tol=1e-9, max_iter=20000)

    start = optimum(C / 10)[:2]
    w_best, b_best, *_ = optimum(C)
    best = objective(w_best.T, b_best, xs, y, C)
    assert (objective(start[0].T, start[1], xs, y, C) - best) / best > 1e-3  # the start is no optimum
    hessian = loss_hessian(x, *start, mean, scale)
    w, b, n_iter, converged, *_ = fit_logistic(rows, y, 10, 1 / (C * n), mean, scale,
                                              Preconditioner(hessian=hessian), start, tol=1e-3)  # fmt: skip
    assert converged and n_iter > 0
    assert (objective(w.T, b, xs, y, C) - best) / best < 1e-4


@pytest.mark.parametrize(
    "whiten, curvature_max_params, started",
    [
        ("always", 3000, {"whitening", "curvature"}),
        ("always", 0, {"whitening"}),
        ("curvature", 3000, {"whitening", "curvature"}),  # the loss Hessian takes over: a whitened cold start
        ("curvature", 0, {"identity"}),  # no loss Hessian: plain standardised L-BFGS, no covariance made
    ],
)
def test_which_fits_are_whitened_and_each_reaches_the_optimum(whiten, curvature_max_params, started, monkeypatch):
    import probes.estimator as estimator

    kinds, covariances = set(), []
    real_fit, real_stats = estimator.fit_logistic, estimator.feature_stats

    def fit(rows, y, k, lam, mean, scale, precond, **kw):
        kinds.add(precond.kind)
        return real_fit(rows, y, k, lam, mean, scale, precond, **kw)

    def stats(rows, covariance, **kw):
        covariances.append(covariance)
        return real_stats(rows, covariance, **kw)

    monkeypatch.setattr(estimator, "fit_logistic", fit)
    monkeypatch.setattr(estimator, "feature_stats", stats)
    x, y = noisy(1500, 30, seed=5)
    probe = LinearProbe(Cs=[0.1, 1.0], solver="preconditioned_lbfgs", tol=1e-6, max_iter=5000, whiten=whiten,
                        curvature_max_params=curvature_max_params).fit(x, y, x[:500], y[:500])  # fmt: skip
    assert kinds == started and any(covariances) == ("whitening" in started)
    mean, scale, _ = feature_stats(Rows(x), False)
    xs = (x - mean) / scale
    _, best = reference(xs, y, probe.C_)
    coef_std, intercept_std = probe.coef_ * scale, probe.intercept_ + probe.coef_ @ mean
    assert (objective(coef_std, intercept_std, xs, y, probe.C_) - best) / best < 1e-4
    with pytest.raises(ValueError, match="whiten: 'sometimes'; expected one of"):
        LinearProbe(whiten="sometimes")


@pytest.mark.parametrize("whiten", [False, True])
def test_a_cold_fit_of_a_near_separable_probe_ends_at_its_optimum(whiten):
    # the objective falls from log 3 to 4e-4: a stop relative to the start's objective alone ended
    # 1.9e-3 above the optimum here (and 1.1e-3 on the trained convnet's fc1_postact at C=1)
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 10)) * 2.5
    y = rng.integers(0, 3, 1500)
    x = (centres[y] + rng.normal(size=(1500, 10))).astype(np.float32)
    C = 100.0
    rows = Rows(x)
    mean, scale, cov = feature_stats(rows, whiten)
    xs = (x - mean) / scale
    _, best = reference(xs, y, C)
    precond = Preconditioner(cov=cov) if whiten else Preconditioner()
    wz, b, _, converged, *_ = fit_logistic(rows, y, 3, 1 / (C * len(y)), mean, scale, precond, tol=1e-5, max_iter=5000)
    assert best < 1e-3 and converged
    assert (objective(wz.T, b, xs, y, C) - best) / best < 1e-4


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("C", [1e-2, 1.0])
def test_the_certified_gap_bounds_the_optimum_from_below(k, C):
    # from a rough iterate (intercepts off too): f at the intercepts found >= the optimum >= the bound;
    # at a tight fit the bound closes on f
    x, y = correlated(2000, k=k, seed=4)
    rows = Rows(x)
    mean, scale, _ = feature_stats(rows, False)
    xs = (x - mean) / scale
    _, best = reference(xs, y, C)
    lam = 1 / (C * len(y))
    for tol, closes in ((1e-1, False), (1e-9, True)):
        w, b, *_ = fit_logistic(rows, y, k, lam, mean, scale, Preconditioner(), tol=tol, max_iter=5000)
        b_star, f, lower, f_given = certified_gap(rows, y, w, b + 0.3, lam, mean, scale, k == 2)
        assert objective(w.T, b_star, xs, y, C) == pytest.approx(f, rel=1e-6)
        assert objective(w.T, b + 0.3, xs, y, C) == pytest.approx(f_given, rel=1e-6)
        # up to the float32 objective's rounding (1e-8 of it)
        assert lower <= best * (1 + 1e-7) and best <= f * (1 + 1e-7) and f <= objective(w.T, b + 0.3, xs, y, C)
        assert (f - lower < 1e-5 * best) == closes


@pytest.mark.parametrize("k", [2, 3])
def test_the_certified_gap_bounds_the_optimum_where_huge_weights_saturate_every_score(k):
    # weights stationary for intercepts that put every row in one class, the scores so large that
    # Newton's steps on the intercepts see no curvature: the bound must still be below the optimum
    # (the objective at zero weights, log k, is above it); a charge for the intercepts' residual by
    # its quadratic estimate proved such a point, loss 1e13, optimal (a warm start's, in a run)
    x, y = correlated(1000, d=4, k=k, seed=6)
    rows = Rows(x)
    mean, scale, _ = feature_stats(rows, False)
    xs = ((x - mean) / scale).astype(np.float64)
    lam = 1 / (1.0 * len(y))
    kk = 1 if k == 2 else k
    last = np.eye(k)[k - 1] - np.eye(k)[y]  # every row scored as the last class: its residuals
    w = -(xs.T @ (last[:, 1:] if k == 2 else last)) / len(y) / lam  # the weight gradient is zero there
    b = np.zeros(kk)
    b[-1] = 1e3 + 10 * np.abs(xs @ w).max()
    _, f, lower, _ = certified_gap(rows, y, w, b, lam, mean, scale, k == 2)
    assert f > 100 and lower <= np.log(k)


def test_a_warm_fit_at_a_weaker_penalty_moves_to_its_optimum_even_where_its_start_meets_the_tolerance():
    # a C walk up a decade at a time, each fit from the previous C's solution, unpreconditioned (as
    # the widest layers): at C=100 the start's gradient, the change of penalty times the weights, met
    # the gradient tolerance, and the fit stopped at 0 iterations 12% above its optimum (1144fd5)
    rng = np.random.default_rng(0)
    a, w_true = rng.standard_normal((20, 128)), rng.standard_normal((20, 10)) * 2
    z = rng.standard_normal((10000, 20))
    x = (z @ a + 0.05 * rng.standard_normal((10000, 128))).astype(np.float32)  # 128 columns of rank ~20
    y = np.argmax(z @ w_true + rng.gumbel(size=(10000, 10)), axis=1)
    rows = Rows(x)
    mean, scale, _ = feature_stats(rows, False)

    def fit(C, init, tol, max_iter=1000):
        return fit_logistic(rows, y, 10, 1 / (C * len(y)), mean, scale, Preconditioner(), init=init, tol=tol,
                            max_iter=max_iter)  # fmt: skip

    start = None
    for C in (1.0, 10.0, 100.0):
        w, b, n_iter, converged, f, _ = fit(C, start, 1e-3)
        start = (w, b)
    f_best = fit(100.0, None, 1e-6, max_iter=3000).objective
    assert converged and n_iter > 0 and (f - f_best) / f_best < 1e-3


def test_a_warm_start_worse_than_zero_weights_starts_from_zero():
    # a previous checkpoint's probe of a layer whose activations were 1e-11 and are now O(1): its
    # raw weights, 1e12, standardised for the new scale, stalled L-BFGS at a loss of 1e12
    x, y = correlated(2000, k=3, seed=7)
    rows = Rows(x)
    mean, scale, _ = feature_stats(rows, False)
    lam = 1 / (1.0 * len(y))
    rng = np.random.default_rng(0)
    garbage = (rng.normal(size=(x.shape[1], 3)) * 1e12, rng.normal(size=3) * 1e12)
    f_cold = fit_logistic(rows, y, 3, lam, mean, scale, Preconditioner(), tol=1e-6, max_iter=2000).objective
    warm = fit_logistic(
        rows, y, 3, lam, mean, scale, Preconditioner(), init=garbage, tol=1e-6, max_iter=2000, gap_tol=1e-4
    )
    converged, f_warm = warm.converged, warm.objective
    assert converged and f_warm == pytest.approx(f_cold, rel=1e-4)


def test_a_probe_warm_started_worse_than_zero_weights_is_the_cold_probe():
    # the estimator's warm fits are preconditioned by the loss Hessian at their start: at a start
    # worse than none that curvature is no guide either (1,000 iterations, not converged, in a run),
    # so such a start is a cold fit, at the start's C (here the walk's own first C)
    x, y = correlated(3000, k=3, seed=8)
    xv, yv = correlated(1000, k=3, seed=9)
    kw = {"Cs": [1e-2, 1e-1, 1.0], "tol": 1e-5, "select_rows": 1000, "curvature_rows": 300}
    cold = LinearProbe(**kw).fit(x, y, xv, yv)
    rng = np.random.default_rng(1)
    garbage = {"C": 0.1, "coef": rng.normal(size=cold.coef_.shape) * 1e12, "intercept": rng.normal(size=3) * 1e12}
    warm = LinearProbe(**kw).fit(x, y, xv, yv, init=garbage)
    assert warm._curvature(x.shape[1]) and warm.converged_
    assert [(r["C"], r["n_iter"]) for r in warm.path_] == [(r["C"], r["n_iter"]) for r in cold.path_]
    assert (warm.C_, warm.val_error_) == (cold.C_, cold.val_error_)


@pytest.mark.parametrize("k", [2, 3])
def test_a_fit_proven_within_gap_tol_stops_there_and_is(k):
    x, y = correlated(3000, k=k, seed=5)
    rows = Rows(x)
    mean, scale, _ = feature_stats(rows, False)
    xs = (x - mean) / scale
    C = 0.1
    _, best = reference(xs, y, C)
    lam = 1 / (C * len(y))
    fits = {gap: fit_logistic(rows, y, k, lam, mean, scale, Preconditioner(), tol=1e-9, max_iter=5000, gap_tol=gap)
            for gap in (None, 1e-3, 1e-6)}  # fmt: skip
    iterations = {gap: fit.n_iter for gap, fit in fits.items()}
    assert iterations[1e-3] < iterations[1e-6] < iterations[None]
    for gap in (1e-3, 1e-6):
        w, b, _, converged, f, _ = fits[gap]
        assert converged and objective(w.T, b, xs, y, C) == pytest.approx(f, rel=1e-6)
        assert 0 <= (objective(w.T, b, xs, y, C) - best) / best <= gap


def test_a_probe_whose_fit_was_proven_reports_the_proofs_bound_without_bounding_it_again(monkeypatch):
    # the proof that ended the chosen fit is its gap bound: no further passes over the rows
    import probes.estimator as estimator

    x, y = correlated(4000, k=3, seed=5)
    x, y, xv, yv = x[:3000], y[:3000], x[3000:], y[3000:]
    kw = {"Cs": [0.1], "tol": 1e-9, "max_iter": 5000, "select_rows": 0, "curvature_max_params": 0}
    unproven = LinearProbe(gap_tol=None, **kw).fit(x, y, xv, yv)
    calls, real = [], estimator.certified_gap
    monkeypatch.setattr(estimator, "certified_gap", lambda *a: calls.append(a) or real(*a))
    proven = LinearProbe(gap_tol=1e-6, **kw).fit(x, y, xv, yv)
    assert proven.n_iter_ < unproven.n_iter_ and not calls  # stopped by its proof, which gave the bound
    assert 0 < proven.gap_bound_ <= 1e-6
    mean, scale, _ = feature_stats(Rows(x), False)
    xs = (x - mean) / scale
    _, best = reference(xs, y, 0.1)
    f = objective(proven.coef_ * scale, proven.intercept_ + proven.coef_ @ mean, xs, y, 0.1)
    assert (f - best) / f <= proven.gap_bound_ * (1 + 1e-6) + 1e-7  # and the bound holds


def test_probe_with_subsampled_grid_chooses_c_on_all_rows_and_ends_at_the_optimum():
    x, y = noisy(4000, 80, seed=1)
    xv, yv = noisy(2000, 80, seed=2)
    kw = {"Cs": [1e-3, 1e-2, 1e-1, 1.0, 10.0], "solver": "preconditioned_lbfgs", "tol": 1e-6, "max_iter": 2000,
          "curvature_rows": 300}  # fmt: skip
    probe = LinearProbe(select_rows=400, **kw).fit(x, y, xv, yv)
    on_subsample = [r for r in probe.path_ if r["rows"] == 400]
    assert on_subsample and probe.path_[len(on_subsample) :] and {r["rows"] for r in probe.path_} == {400, 4000}
    # 400 rows at the full data's per-row penalty overfit sooner: they prefer a smaller C ...
    sub_choice = min(on_subsample, key=lambda r: (r["val_error"], r["val_loss"]))["C"]
    # ... which the walk on every row, started there, corrects to the choice of a walk on all rows only
    assert probe.C_ == LinearProbe(select_rows=0, **kw).fit(x, y, xv, yv).C_ != sub_choice
    mean, scale, _ = feature_stats(Rows(x), False)
    xs = (x - mean) / scale
    _, best = reference(xs, y, probe.C_)
    # the raw-feature weights, mapped back to standardised features, are at the optimum
    coef_std = probe.coef_ * scale
    intercept_std = probe.intercept_ + probe.coef_ @ mean
    f = objective(coef_std, intercept_std, xs, y, probe.C_)
    assert (f - best) / best < 1e-4
    assert (f - best) / f <= probe.gap_bound_ * (1 + 1e-6) + 1e-7 and probe.gap_bound_ < 1e-4  # the bound holds
    assert probe.train_error_ == pytest.approx(1 - probe.score(x, y))


def low_rank(n, seed, rank=15, d=240):
    """Wide rows that are a linear map of ``rank`` latent features (as a convolution's
    pre-activations are of its input), with offsets; labels from the latent features. One
    row in a hundred also has a rare feature of its own (as MNIST's border pixels), which
    a sample of the rows would miss."""
    mixing = np.random.default_rng(0).normal(size=(rank + 1, d)) * np.random.default_rng(1).uniform(0.1, 5, d)
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, rank + 1))
    latent[np.arange(n) % 100 != 7, rank] = 0.0  # the rare feature
    y = np.argmax(latent[:, :3] * 2 + rng.gumbel(size=(n, 3)), axis=1)
    return (latent @ mixing + 3.0).astype(np.float32), y


@pytest.mark.parametrize("C", [1e-2, 1.0])
def test_wide_low_rank_rows_are_fitted_on_their_span_at_the_full_optimum(C, tmp_path):
    x, y = low_rank(1500, seed=2)
    xv, yv = low_rank(500, seed=3)
    probe = LinearProbe(Cs=[C], solver="preconditioned_lbfgs", tol=1e-7, max_iter=5000,
                        whiten_max_width=100).fit(x, y, xv, yv)  # fmt: skip
    assert probe.reduced_rank_ == 16 and probe.coef_.shape == (3, 240)  # the rare feature's direction too
    mean, scale, _ = feature_stats(Rows(x), False)
    xs = (x - mean) / scale
    _, best = reference(xs, y, C)  # scikit-learn on all 240 standardised columns
    coef_std, intercept_std = probe.coef_ * scale, probe.intercept_ + probe.coef_ @ mean
    assert (objective(coef_std, intercept_std, xs, y, C) - best) / best < 1e-4
    with h5py.File(tmp_path / "x.h5", "w") as f:  # read from HDF5: the same span
        f["x"] = x
        z, basis = row_space(Rows(f["x"]), mean, scale, 100)
    assert basis.shape == (240, 16) and np.allclose(z @ basis.T, xs, atol=1e-4 * np.abs(xs).max())
    # wider spans are not reduced: full-rank rows (a nonlinearity of the same), or a span over the limit
    full = LinearProbe(Cs=[C], solver="preconditioned_lbfgs", whiten_max_width=100)
    assert full.fit(np.maximum(x - 3.0, 0), y, np.maximum(xv - 3.0, 0), yv).reduced_rank_ is None
    assert row_space(Rows(x), mean, scale, 15) is None


def test_a_span_over_the_limit_is_told_from_the_first_rows():
    x, _ = low_rank(1500, seed=2)  # span of 16 dimensions (15 latent + the rare one)
    mean, scale, _ = feature_stats(Rows(x), False)
    assert not spans_more_than(Rows(x), mean, scale, 20) and spans_more_than(Rows(x), mean, scale, 10)
    full = np.maximum(x - 3.0, 0)  # a nonlinearity of the same: full rank
    mean, scale, _ = feature_stats(Rows(full), False)
    assert spans_more_than(Rows(full), mean, scale, 100)
    assert not spans_more_than(Rows(full[:100]), mean, scale, 100)  # too few rows to tell


def test_out_of_core_fit_equals_in_memory_fit(tmp_path):
    x, y = correlated(2000, d=40, k=3, seed=3)
    xv, yv = correlated(600, d=40, k=3, seed=3)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["x"], f["xv"] = x, xv
    settings = {"Cs": [1e-2, 1.0], "solver": "preconditioned_lbfgs", "tol": 1e-6, "max_iter": 5000,
                "select_rows": 700, "curvature_rows": 300}  # fmt: skip
    memory = LinearProbe(**settings).fit(x, y, xv, yv)
    with h5py.File(tmp_path / "a.h5", "r") as f:
        # blocks of 4 KiB: 25 rows of 40 features, so every pass streams 80 reads
        streamed = LinearProbe(**settings).fit(Rows(f["x"], 4096), y, Rows(f["xv"], 4096), yv)
    assert streamed.C_ == memory.C_ and streamed.val_error_ == memory.val_error_
    np.testing.assert_allclose(streamed.coef_, memory.coef_, rtol=1e-3, atol=1e-4 * np.abs(memory.coef_).max())
    assert streamed.train_loss_ == pytest.approx(memory.train_loss_, rel=1e-5)


def test_fit_points_streams_a_layer_over_the_memory_budget(tmp_path):
    x, y = correlated(1500, d=64, k=3, seed=5)
    path = activation_file(tmp_path / "act.h5", {"layer": x}, y, splits=((0, 1000), (1000, 1250), (1250, 1500)))
    probe = {"Cs": [0.1, 1.0], "solver": "preconditioned_lbfgs", "tol": 1e-6, "max_iter": 5000, "standardize": True,
             "patience": 1, "random_state": 0, "select_rows": 0}  # fmt: skip
    results = {}
    for budget in (0, 0.1):  # 0: always load; 0.1 MB < the 0.24 MB training matrix: stream
        spec = {"point": "layer", "layer_index": 1, "probe": {**probe, "memory_budget_mb": budget}}
        out = tmp_path / f"b{budget}"
        results[budget] = fit_points({"experiment": "e", "repeat": 0, "step": 0, "points": [spec]},
                                     path, out.with_suffix(".json"), out.with_suffix(".npz"))[0]  # fmt: skip
        assert json.loads(out.with_suffix(".json").read_text())[0]["out_of_core"] is (budget > 0)
    for key in ("C", "train_error", "val_error", "test_error"):
        assert results[0][key] == results[0.1][key]
    assert results[0.1]["test_loss"] == pytest.approx(results[0]["test_loss"], rel=1e-5)
    # the budget counts the float32 matrix read into memory, not a float16 file's 0.128 MB
    half = activation_file(
        tmp_path / "half.h5", {"layer": x}, y, ((0, 1000), (1000, 1250), (1250, 1500)), dtype="float16"
    )
    spec = {"point": "layer", "layer_index": 1, "probe": {**probe, "memory_budget_mb": 0.2}}
    out = tmp_path / "half"
    fit_points({"experiment": "e", "repeat": 0, "step": 0, "points": [spec]}, half, out.with_suffix(".json"),
               out.with_suffix(".npz"))  # fmt: skip
    assert json.loads(out.with_suffix(".json").read_text())[0]["out_of_core"]


# warm fits preconditioned by the loss Hessian, or not
@pytest.mark.parametrize("settings", [{}, {"curvature_max_params": 0}])
def test_a_walk_passes_over_the_rows_at_zero_weights_once(settings, monkeypatch):
    """Every warm fit's stopping rule is relative to the gradient at zero, the same at every C."""
    import probes.solver

    at_zero = []

    def recorded_loss_grad(rows, y, w, b, *a, **kw):
        at_zero.append(not np.any(w) and not np.any(b))
        return _loss_grad(rows, y, w, b, *a, **kw)

    monkeypatch.setattr(probes.solver, "_loss_grad", recorded_loss_grad)
    x, y = correlated(1500, k=3, seed=5)
    probe = LinearProbe(Cs=[1e-3, 1e-2, 1e-1, 1.0], patience=None, extend_decades=0, select_rows=0, **settings)
    probe.fit(x[:1000], y[:1000], x[1000:], y[1000:])
    assert len(probe.path_) == 4 and sum(at_zero) == 1
