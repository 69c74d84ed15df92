"""Linear classifier probes: multinomial logistic regression with C chosen on validation.

``LinearProbe`` follows scikit-learn's fit / predict / score conventions, with
one difference: ``fit`` also takes the validation split, on which it picks the
inverse regularisation ``C`` from a grid. The walk starts at the grid's middle
C (its lower middle for an even grid; or a given probe's C, from its weights),
goes up towards weaker regularisation, then down from there towards stronger,
each fit warm-started from the previous solution; each direction stops once
validation error has not improved for ``patience`` grid points. Where the best C
is at an end of the grid (the validation curve has not turned), the walk goes
on past it a decade at a time, up to ``extend_decades``, and a best C at the
last reachable one is flagged (``C_limit_``) unless its decade's gain was within
the validation error's noise (where the curve flattened).

Two solvers minimise the same objective (scikit-learn's, on standardised
features): scikit-learn's own (``lbfgs``, ``sag``, ``saga``; ``sklearnex`` for
scikit-learn-intelex's lbfgs), and
``preconditioned_lbfgs`` (``solver.py``): L-BFGS preconditioned by the loss Hessian
(narrow points, once warm; whitened by the feature covariance before) or on plain
standardised features, reading rows from memory or streaming them from HDF5. The
latter may first walk the grid on a random subsample of ``select_rows``
training rows (at the full data's per-row regularisation), then walk it again on
every row starting from the subsample's choice and solution (fewer rows prefer
stronger regularisation, so the subsample gives the start, not the answer), both
walks' fits to the rough tolerance ``ROUGH_TOL`` only, and refit the chosen C on
every row to ``tol``. The stored ``coef_`` / ``intercept_`` act on raw
(unstandardised) features.

``device`` says where ``preconditioned_lbfgs`` multiplies by the activations: ``cpu``
(NumPy, the default), ``cuda``, ``auto`` (``cuda`` when available, else ``cpu``), or
``torch:cpu`` (the torch path on the CPU: for tests and diagnosis). See ``arrays.py``.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from .arrays import NUMPY, namespace
from .solver import (
    DEVICE_BLOCK_BYTES,
    Fit,
    Preconditioner,
    Rows,
    certified_gap,
    feature_stats,
    fit_logistic,
    loss_hessian,
    objective,
    on,
    row_space,
    worse_than_zero,
)

log = logging.getLogger(__name__)
SKLEARN_SOLVERS = ("lbfgs", "sag", "saga", "sklearnex")  # sklearnex: oneDAL's lbfgs (scikit-learn-intelex)
SOLVERS = (*SKLEARN_SOLVERS, "preconditioned_lbfgs")
WHITEN = ("curvature", "always")
ROUGH_TOL = 1e-3  # gradient tolerance of the C walks and of a cold fit's first, curvature-measuring stage


def as_rows(x) -> Rows:
    return x if isinstance(x, Rows) else Rows(x)


def row_summary(x) -> tuple[float, bool]:
    """Mean Euclidean norm of the rows of ``x`` (float64 accumulation), and whether every row
    equals the first (a layer constant over the data); one pass, block by block."""
    rows = as_rows(x)
    total, constant, first = 0.0, True, None
    for _, block in rows:
        b64 = block.astype(np.float64)
        total += float(np.sqrt(np.einsum("ij,ij->i", b64, b64)).sum())
        first = block[0].copy() if first is None else first
        constant = constant and bool(np.all(block == first))
    return total / rows.n, constant


def scores(x: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """Class scores ``x @ coef.T + intercept``, one column per class (scikit-learn keeps a
    single column for binary problems: the first class's score is then 0)."""
    return every_class(x @ coef.T + intercept)


def every_class(z: np.ndarray) -> np.ndarray:
    """Scores with the first class's column of zeros added for a binary problem's single one."""
    return np.hstack([np.zeros_like(z), z]) if z.shape[1] == 1 else z


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def metrics(coef, intercept, classes, x, y) -> tuple[float, float]:
    """Error rate and mean cross-entropy of a raw-feature linear model on ``(x, y)``, block by block
    (the scores on the device of ``Rows`` ``x``; the rest, on ``(rows, classes)``, on the host)."""
    wrong, nll = 0, 0.0
    pos = np.searchsorted(classes, y)
    known = (pos < len(classes)) & (classes[np.minimum(pos, len(classes) - 1)] == y)
    coef, intercept = np.asarray(coef, np.float64), np.asarray(intercept, np.float64)
    rows = as_rows(x)
    xp = rows.xp
    coef_t, intercept_x = xp.asarray(coef.T), xp.asarray(intercept)
    for sl, block in rows:  # float64: a collapsed layer's raw weights are large and cancel
        lp = log_softmax(every_class(xp.to_host(xp.astype(block, xp.float64) @ coef_t + intercept_x)))
        p, k = pos[sl], known[sl]
        wrong += int(np.sum((lp.argmax(1) != p) | ~k))
        nll -= float(lp[np.arange(len(p))[k], p[k]].sum())
    # a label the probe never saw in training has zero probability under it
    return wrong / rows.n, (nll / rows.n if known.all() else float("inf"))


def noise(error: float, n: int) -> float:
    """The standard error of an error rate measured on ``n`` rows: sqrt(e (1 - e) / n)."""
    return float(np.sqrt(error * (1.0 - error) / n))


def unstandardise(coef: np.ndarray, intercept: np.ndarray, mean, scale) -> tuple[np.ndarray, np.ndarray]:
    """Raw-feature weights of a standardised model: w.(x - m)/s + b = (w/s).x + (b - (w/s).m)."""
    raw = coef / scale
    return raw, intercept - raw @ mean  # float64: a collapsed layer's intercept is a large cancelling sum


def standardise(coef: np.ndarray, intercept: np.ndarray, mean, scale) -> tuple[np.ndarray, np.ndarray]:
    """Standardised-feature weights of a raw-feature model: ``unstandardise``'s inverse."""
    coef = np.asarray(coef, np.float64)
    return coef * scale, np.asarray(intercept, np.float64) + coef @ mean


# A fitter fits at C from a warm start (or None) and returns (solution, n_iter, converged, rows used),
# the solution being raw-feature (coef, intercept) plus whatever it needs to warm-start the next fit.
Fitter = Callable[[float, object], tuple[dict, int, bool, int]]


def logistic_regression(solver: str) -> tuple[type, str]:
    """The ``LogisticRegression`` class and its solver for a scikit-learn ``solver``: scikit-learn's,
    or for ``sklearnex`` scikit-learn-intelex's, whose lbfgs evaluates the objective by oneDAL
    (its threads capped by a ``threadpoolctl`` limit on the OpenMP libraries then loaded, as
    ``probes fit --threads`` sets after importing this module)."""
    if solver != "sklearnex":
        return LogisticRegression, solver
    try:
        from sklearnex.linear_model import LogisticRegression as OneDALLogisticRegression
    except ImportError as e:
        raise ImportError("probe solver 'sklearnex' needs scikit-learn-intelex: pip install 'probes[fast]'") from e
    return OneDALLogisticRegression, "lbfgs"


class LinearProbe:
    """A multinomial logistic-regression probe (the convex objective of scikit-learn's ``LogisticRegression``).

    Parameters: ``Cs`` the grid of inverse regularisation strengths; ``solver``
    one of ``lbfgs``, ``sag``, ``saga`` (scikit-learn), ``sklearnex`` (scikit-learn-intelex's
    lbfgs, ``logistic_regression``) or ``preconditioned_lbfgs``;
    ``tol`` and ``max_iter`` per fit; ``gap_tol`` (``preconditioned_lbfgs``: a fit also stops once
    proven within this relative gap of its optimum, ``solver.certified_gap``; ``None``: never);
    ``standardize``; ``patience`` (grid points
    without validation improvement before the walk stops; ``None`` walks the
    whole grid); ``extend_decades`` (how many decades the walk may go past either end of
    ``Cs`` while validation error still falls there); ``random_state``; for
    ``preconditioned_lbfgs`` only,
    ``select_rows`` (first walk the grid on this many training rows, then on all
    from the C chosen there; 0 for all rows throughout), ``whiten_max_width``
    (plain standardisation above this width), ``whiten`` (which cold fits are whitened:
    ``curvature``, only those whose warm fits the loss Hessian preconditions, and row-space
    bases; ``always``, every layer up to ``whiten_max_width``), ``curvature_max_params``,
    ``curvature_rows`` and ``reduce_rank`` (above ``whiten_max_width``, fit on an
    orthonormal basis of the standardised training rows' span when that has at
    most ``whiten_max_width`` dimensions, as for a linear map of a narrower layer),
    ``device`` (``cpu``, ``cuda``, ``auto``, or ``torch:cpu`` to test the torch path;
    ``arrays.resolve``) and ``device_memory_mb`` (the device memory its matrices may
    fill; beyond, they are streamed to it block by block; default ``arrays.Torch``'s).
    scikit-learn's solvers always run on the host.
    The defaults are the workflow's (the config schema's ``probe`` defaults, the paper's probes).
    """

    def __init__(
        self,
        Cs: list[float] | tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0),
        solver: str = "preconditioned_lbfgs",
        tol: float = 1e-5,
        max_iter: int = 1000,
        gap_tol: float | None = 1e-4,
        standardize: bool = True,
        patience: int | None = 1,
        random_state: int = 0,
        select_rows: int = 10000,
        whiten_max_width: int = 4096,
        whiten: str = "curvature",
        curvature_max_params: int = 3000,
        curvature_rows: int = 2000,
        reduce_rank: bool = True,
        extend_decades: int = 3,
        device: str = "cpu",
        device_memory_mb: float | None = None,
    ) -> None:
        if solver not in SOLVERS:
            raise ValueError(f"solver: {solver!r}; expected one of {list(SOLVERS)}")
        if whiten not in WHITEN:
            raise ValueError(f"whiten: {whiten!r}; expected one of {list(WHITEN)}")
        self.Cs, self.solver, self.tol, self.max_iter, self.gap_tol = Cs, solver, tol, max_iter, gap_tol
        self.standardize, self.patience, self.random_state = standardize, patience, random_state
        self.select_rows, self.whiten_max_width, self.whiten = select_rows, whiten_max_width, whiten
        self.curvature_max_params, self.curvature_rows = curvature_max_params, curvature_rows
        self.reduce_rank, self.extend_decades = reduce_rank, extend_decades
        self.device, self.device_memory_mb = device, device_memory_mb

    def fit(
        self, x, y: np.ndarray, x_val, y_val: np.ndarray, copy: bool = True, init: dict | None = None
    ) -> LinearProbe:
        """Fit one probe per C on ``(x, y)``; keep the one with the lowest validation error.

        ``x`` and ``x_val`` are float32 arrays or, for ``preconditioned_lbfgs``, also
        ``Rows`` over HDF5 datasets (fitted out of core). With ``copy=False`` a
        scikit-learn solver standardises the arrays in place (no second copy of a
        wide matrix). ``init``, a probe of the same features and classes (``C``,
        raw-feature ``coef`` and ``intercept``, as ``fit_point`` stores them; say the
        previous checkpoint's), warm-starts the walk (the subsample's, if any): it
        starts at that C from those weights. Each C's optimum is the same as cold;
        with ``patience`` the walk may visit, and so choose, other C's than a cold one.
        Sets ``C_``, ``C_limit_`` (``_walk``), ``coef_``, ``intercept_``, ``classes_``,
        ``n_iter_``, ``converged_``, ``gap_bound_`` (``preconditioned_lbfgs``: the chosen fit's objective
        is at most this fraction of it above the optimum, ``solver.certified_gap``; ``None`` for
        scikit-learn's solvers), ``path_`` (one record per fit), ``train_error_``,
        ``train_loss_``, ``val_error_``, ``val_loss_``, ``fit_seconds_`` and ``device_``
        (where the products ran: ``cpu`` for NumPy, else the torch device, as ``torch:cpu``).
        """
        if not len(self.Cs):
            raise ValueError("Cs: empty grid; expected at least one C > 0")
        t0 = time.time()
        xp = namespace(self.device, self.device_memory_mb, DEVICE_BLOCK_BYTES)  # refuses a missing CUDA
        if self.solver in SKLEARN_SOLVERS and xp is not NUMPY:
            log.info("solver %s runs on the host (device %s: preconditioned_lbfgs only)", self.solver, self.device)
            xp = NUMPY
        self.device_ = xp.name
        self.path_: list[dict] = []
        self.reduced_rank_: int | None = None
        self.gap_bound_: float | None = None
        self.classes_, y_index = np.unique(y, return_inverse=True)
        rows = as_rows(x)
        first = None if init is None else self._check_init(init, rows.d)
        if self.solver in SKLEARN_SOLVERS:
            if not rows.in_memory:
                raise ValueError(f"solver {self.solver!r} needs the training matrix in memory")
            x = np.array(x, dtype=np.float32, copy=copy)
            mean, scale, _ = self._stats(Rows(x), False)
            fitter = self._sklearn_fitter(x, y, mean, scale)  # standardises x in place
            start = None if first is None else {"std": standardise(init["coef"], init["intercept"], mean, scale)}
            best, _ = self._walk(fitter, x_val, y_val, first, start)
            train = metrics(*best["solution"]["std"], self.classes_, x, y)
        else:
            rows, x_val = on(rows, xp), on(x_val, xp)  # the training rows first to the device's memory
            mean, scale, cov = self._stats(rows, self._whitens(rows.d))
            rng = np.random.default_rng(self.random_state)
            fit_rows, fit_mean, fit_scale, basis = rows, mean, scale, None
            if rows.d > self.whiten_max_width and self.reduce_rank:  # look for a lower-rank row space
                fit_rows, fit_mean, fit_scale, cov, basis = self._reduce(rows, mean, scale, cov)

            def to_raw(w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                return unstandardise((w if basis is None else basis @ w).T, b, mean, scale)

            base = Preconditioner(cov=cov, xp=xp)
            sub_rows, sub_y = fit_rows, y_index
            if 0 < self.select_rows < rows.n:  # walk the grid on a random subsample
                pick = np.sort(rng.choice(rows.n, self.select_rows, replace=False))
                sub_rows, sub_y = Rows(fit_rows.take(pick), xp=xp), y_index[pick]
            hessian_x = None  # rows to measure the loss Hessian on, where it is affordable
            if self._curvature(fit_rows.d):
                m = min(self.curvature_rows, sub_rows.n)
                hessian_x = xp.asarray(sub_rows.take(np.sort(rng.choice(sub_rows.n, m, replace=False))))
            stats = (fit_mean, fit_scale, base, hessian_x, to_raw)
            rough, start = max(self.tol, ROUGH_TOL), None
            if first is not None:  # warm: from the given probe, in the coordinates fitted
                w, b = standardise(init["coef"], init["intercept"], mean, scale)
                start = {"std": (w.T if basis is None else basis.T @ w.T, b)}
            if sub_rows is fit_rows:  # one walk on every row, to tol (cold or from init)
                fitter = self._preconditioned_fitter(fit_rows, y_index, rows.n, *stats, self.tol)
                best, _ = self._walk(fitter, x_val, y_val, first, start)
            else:  # walk the subsample, then every row from its choice and solution, both to the
                # rough tolerance; then refit the chosen C to tol
                sub_fitter = self._preconditioned_fitter(sub_rows, sub_y, rows.n, *stats, rough)
                best, flat = self._walk(sub_fitter, x_val, y_val, first, start)
                fitter = self._preconditioned_fitter(fit_rows, y_index, rows.n, *stats, rough)
                best, _ = self._walk(fitter, x_val, y_val, best["C"], best["solution"], flat)
                if rough > self.tol:
                    fitter = self._preconditioned_fitter(fit_rows, y_index, rows.n, *stats, self.tol)
                    best = self._fit_and_record(fitter, best["C"], best["solution"], x_val, y_val)
            train = metrics(best["solution"]["coef"], best["solution"]["intercept"], self.classes_, rows, y)
            lower, f = best["solution"]["lower"], best["solution"]["objective"]
            if lower is None:  # no proof ended the chosen fit: bound it now
                w, b = best["solution"]["std"]
                *_, lower, f = certified_gap(fit_rows, y_index, w, b, 1.0 / (best["C"] * rows.n), fit_mean,
                                             fit_scale, len(self.classes_) == 2)  # fmt: skip
            self.gap_bound_ = (f - max(lower, 0.0)) / f  # (f - f*) / f <= this: f* >= max(lower, 0)
        self.C_, self.n_iter_, self.converged_ = best["C"], best["n_iter"], best["converged"]
        self.val_error_, self.val_loss_ = best["val_error"], best["val_loss"]
        self.coef_, self.intercept_ = best["solution"]["coef"], best["solution"]["intercept"]
        self.train_error_, self.train_loss_ = train
        self.fit_seconds_ = time.time() - t0
        return self

    def _check_init(self, init: dict, d: int) -> float:
        """The grid C a warm start begins at (the grid's nearest to ``init["C"]``, on a log scale),
        after checking ``init``'s weights fit this problem's ``d`` features and classes."""
        coef, intercept = np.asarray(init["coef"]), np.asarray(init["intercept"])
        k = 1 if len(self.classes_) == 2 else len(self.classes_)
        if coef.shape != (k, d) or intercept.shape != (k,) or not np.isfinite(init["C"]) or init["C"] <= 0:
            raise ValueError(f"init: a probe of coef {coef.shape}, intercept {intercept.shape}, C={init['C']}; "
                             f"expected ({k}, {d}), ({k},) and C > 0 for {len(self.classes_)} classes, {d} features")  # fmt: skip
        grid = self.grid()
        return grid[int(np.argmin(np.abs(np.log(grid) - np.log(init["C"]))))]

    def _curvature(self, d: int) -> bool:
        """Whether warm fits on ``d`` features are preconditioned by the loss Hessian."""
        return (d + 1) * (1 if len(self.classes_) == 2 else len(self.classes_)) <= self.curvature_max_params

    def _whitens(self, d: int) -> bool:
        """Whether fits on ``d`` features start whitened (a row-space basis always is: ``_reduce``).
        With ``whiten: curvature``, only where the loss Hessian takes over once warm; elsewhere
        plain standardised L-BFGS (scikit-learn's ``lbfgs`` algorithm), which reaches a 1e-4 gap
        sooner on the convnet's 512- to 3,136-wide points (docs/probes.md#preconditioning)."""
        return d <= self.whiten_max_width and (self.whiten == "always" or self._curvature(d))

    def _reduce(self, rows: Rows, mean, scale, cov) -> tuple:
        """``rows`` in an orthonormal basis of their standardised span, if that has at most
        ``whiten_max_width`` dimensions: the rows, mean, scale (0 and 1: nothing to
        standardise), covariance and basis to fit with (``rows`` and the rest unchanged,
        basis ``None``, otherwise). Sets ``reduced_rank_``."""
        t0 = time.time()
        found = row_space(rows, mean, scale, self.whiten_max_width)
        if found is None:
            log.info("training rows span more than %d dimensions: fitting all %d columns (%.1f s)",
                     self.whiten_max_width, rows.d, time.time() - t0)  # fmt: skip
            return rows, mean, scale, cov, None
        z, basis = found
        r = basis.shape[1]
        log.info("training rows span %d of %d dimensions: fitting on that basis (%.1f s)", r, rows.d, time.time() - t0)
        self.reduced_rank_ = r
        z_rows = Rows(z, xp=rows.xp)
        z_cov = feature_stats(z_rows, True, standardised=False)[2]  # z is fitted as it is: its raw covariance
        return z_rows, np.zeros(r), np.ones(r), z_cov, basis

    def _stats(self, rows: Rows, covariance: bool):
        """Standardisation (mean, scale) and the preconditioner's covariance (if asked)."""
        mean, scale, cov = feature_stats(rows, covariance, standardised=self.standardize)
        if self.standardize:
            return mean, scale, cov
        return np.zeros_like(mean), np.ones_like(scale), cov

    def grid(self) -> list[float]:
        """The C grid and its extensions: ``extend_decades`` decades below and above ``Cs``, a
        decade apart, in increasing order (``_walk`` visits an extension only while the best C
        is the last one it fitted in that direction). A single C is fixed: no extensions."""
        core = sorted(self.Cs)
        n = self.extend_decades if len(core) > 1 else 0  # one C is a fixed C, not a grid to search
        below = [core[0] / 10.0**k for k in range(n, 0, -1)]
        above = [core[-1] * 10.0**k for k in range(1, n + 1)]
        return below + core + above

    def _walk(
        self, fitter: Fitter, x_val, y_val, first: float | None = None, init=None, flat: dict | None = None
    ) -> tuple[dict, dict]:
        """Walk the C grid from ``first`` (default: the middle of ``Cs``) up to the weakest
        regularisation, then from ``first`` down to the strongest; return the best record. The
        fit at ``first`` starts from ``init`` (or cold), every other from its neighbour's solution.
        Then, while the best C is the largest (smallest) C fitted and at or past that end of
        ``Cs`` (the validation curve has not turned there), fit a decade further, up to
        ``extend_decades`` past the end, for as long as each decade lowers the validation error
        by more than the previous best's standard error (``noise``): a smaller gain is within
        the validation split's sampling noise, so the curve has flattened there, and the fits
        further out (weaker regularisation) are the costliest and the hardest to converge. The
        best of the C's fitted is the probe: its record is returned, with ``flat`` (below).
        Sets ``C_limit_``: ``"upper"`` / ``"lower"`` when the best C is the last C reachable that way and the validation error was still falling
        there by more than its noise (the optimum may lie beyond), else ``""`` (a last C the best
        by less than that is where the curve flattened). ``flat`` says whether the curve
        flattened past each end (``{"upper": ..., "lower": ...}``): a later walk from this one's choice
        that fits nothing further out is given it."""
        grid, core = self.grid(), sorted(self.Cs)
        lo, hi = grid.index(core[0]), grid.index(core[-1])
        i = grid.index(core[(len(core) - 1) // 2]) if first is None else grid.index(first)
        best: dict | None = None  # ordered by val error, val loss, then smaller C
        records: dict[int, dict] = {}  # by grid index
        n_val = as_rows(x_val).n

        def visit(j: int, start, margin: float | None = None) -> bool:
            """Fit ``grid[j]`` from ``start``; whether it is the new best (given a ``margin``: and
            its validation error is lower than the previous best's by more than that)."""
            nonlocal best
            record = records[j] = self._fit_and_record(fitter, grid[j], start, x_val, y_val)
            better = best is None or (record["val_error"], record["val_loss"], record["C"]) < (
                best["val_error"], best["val_loss"], best["C"])  # fmt: skip
            beyond_noise = margin is None or record["val_error"] < best["val_error"] - margin
            best = record if better else best
            return better and beyond_noise

        visit(i, init)
        for step in (1, -1):  # up, then down, within Cs, each stopped by patience
            j, since_best = i, 0
            while lo <= j + step <= hi:
                j += step
                since_best = 0 if visit(j, records[j - step]["solution"]) else since_best + 1
                if self.patience is not None and since_best >= self.patience:
                    break
        flat = dict(flat or {"upper": False, "lower": False})  # whether the curve flattened (or turned) there
        for step, side in ((1, "upper"), (-1, "lower")):  # past an end of Cs while the best is the last C fitted there
            while True:
                j = grid.index(best["C"])
                last = max(records) if step == 1 else min(records)
                past = j >= hi if step == 1 else j <= lo
                if j != last or not past or not 0 <= j + step < len(grid):
                    break
                flat[side] = not visit(j + step, best["solution"], noise(best["val_error"], n_val))
                if flat[side]:
                    break
        end = "" if len(core) == 1 else "upper" if best["C"] == grid[-1] else "lower" if best["C"] == grid[0] else ""
        self.C_limit_ = end if end and not flat[end] else ""
        return best, flat

    def _fit_and_record(self, fitter: Fitter, C: float, start, x_val, y_val) -> dict:
        """Fit at ``C`` from ``start``; append the fit's record (without its solution) to ``path_``."""
        t0 = time.time()
        solution, n_iter, converged, n_rows = fitter(C, start)
        val_error, val_loss = metrics(solution["coef"], solution["intercept"], self.classes_, x_val, y_val)
        record = {
            "C": float(C), "rows": n_rows, "n_iter": n_iter, "converged": converged,
            "val_error": val_error, "val_loss": val_loss, "seconds": time.time() - t0,
        }  # fmt: skip
        self.path_.append(record)
        log.info("C=%g on %d rows: %d iterations%s, val error %.4f, val loss %.4f (%.1f s)",
                 C, n_rows, n_iter, "" if converged else " (NOT CONVERGED)", val_error, val_loss,
                 record["seconds"])  # fmt: skip
        return {**record, "solution": solution}

    def _sklearn_fitter(self, x: np.ndarray, y: np.ndarray, mean, scale) -> Fitter:
        """scikit-learn's ``LogisticRegression`` on ``x`` standardised in place."""
        for _, block in Rows(x):  # Rows yields views of an in-memory float32 array
            block -= mean.astype(np.float32)
            block /= scale.astype(np.float32)
        estimator, solver = logistic_regression(self.solver)
        clf = estimator(solver=solver, tol=self.tol, max_iter=self.max_iter, warm_start=True,
                        random_state=self.random_state)  # fmt: skip

        def fit(C: float, start) -> tuple[dict, int, bool, int]:
            if start is not None:
                clf.coef_, clf.intercept_ = start["std"]
            clf.set_params(C=C)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                clf.fit(x, y)
            n_iter = int(np.max(clf.n_iter_))
            converged = n_iter < self.max_iter and not any(issubclass(w.category, ConvergenceWarning) for w in caught)
            coef, intercept = unstandardise(clf.coef_, clf.intercept_, mean, scale)
            solution = {"coef": coef, "intercept": intercept, "std": (clf.coef_.copy(), clf.intercept_.copy())}
            return solution, n_iter, converged, len(x)

        return fit

    def _preconditioned_fitter(
        self, rows: Rows, y_index, n_train: int, mean, scale, base, hessian_x, to_raw: Callable, tol: float
    ) -> Fitter:
        """``solver.fit_logistic`` on ``rows`` at the per-row regularisation of ``n_train`` rows,
        to gradient tolerance ``tol``. A cold fit uses ``base``; a warm one, given
        ``hessian_x``, the loss Hessian at its start measured on those rows. ``to_raw``
        maps the solution to raw-feature weights."""
        curvature, at_zero = hessian_x is not None, {}  # the rows' objective at zero, once per fitter

        def solve(C: float, precond: Preconditioner, init, tol: float) -> Fit:
            return fit_logistic(rows, y_index, len(self.classes_), 1.0 / (C * n_train), mean, scale,
                                precond, init=init, tol=tol, max_iter=self.max_iter,
                                name=f"C={C:g} on {rows.n} rows", gap_tol=self.gap_tol, at_zero=at_zero)  # fmt: skip

        def fit(C: float, start) -> tuple[dict, int, bool, int]:
            init, n_first = None if start is None else start["std"], 0
            lam, k = 1.0 / (C * n_train), len(self.classes_)
            warm = curvature and init is not None  # curvature measured at the start: is it better than none?
            if warm and worse_than_zero(objective(rows, y_index, k, lam, mean, scale, *init), k):
                log.info("C=%g on %d rows: the start is worse than zero weights: fitting cold", C, rows.n)
                init = None  # no curvature to measure there (fit_logistic would start from zero, preconditioned by it)
            if curvature and init is None:  # a cold fit: a rough optimum first, to measure the curvature at
                first = solve(C, base, None, max(tol, ROUGH_TOL))
                init, n_first = (first.w, first.b), first.n_iter
            precond = Preconditioner(hessian=loss_hessian(hessian_x, *init, mean, scale)) if curvature else base
            fit = solve(C, precond, init, tol)
            coef, intercept = to_raw(fit.w, fit.b)
            solution = {"coef": coef, "intercept": intercept, "std": (fit.w, fit.b), "objective": fit.objective,
                        "lower": fit.lower}  # fmt: skip
            return solution, n_first + fit.n_iter, fit.converged, rows.n

        return fit

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return np.vstack([scores(block, self.coef_, self.intercept_) for _, block in as_rows(x)])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[self.decision_function(x).argmax(1)]

    def score(self, x: np.ndarray, y: np.ndarray) -> float:
        """Accuracy on ``(x, y)``, as scikit-learn's classifiers define ``score``."""
        return float(np.mean(self.predict(x) == y))

    def error_and_loss(self, x, y: np.ndarray) -> tuple[float, float]:
        """Error rate and mean cross-entropy on raw (unstandardised) ``(x, y)``, on the device the
        fit ran on (``x`` streamed there: it is read once)."""
        xp = namespace(self.device_, 0) if getattr(self, "device_", "cpu") != "cpu" else NUMPY
        return metrics(self.coef_, self.intercept_, self.classes_, on(x, xp, resident=False), y)
