"""Linear classifier probes: multinomial logistic regression with C chosen on validation.

``LinearProbe`` follows scikit-learn's fit / predict / score conventions, with
one difference: ``fit`` also takes the validation split, on which it picks the
inverse regularisation ``C`` from a grid. The walk starts cold at the grid's
middle C (its lower middle for an even grid), goes up towards weaker
regularisation, then down from the middle towards stronger, each fit
warm-started from the previous solution; each direction stops once validation
error has not improved for ``patience`` grid points. (Cold fits at strong
regularisation are the slowest on wide layers, and rarely the best.)
Features are standardised with training-split statistics; the stored
``coef_`` / ``intercept_`` act on raw (unstandardised) features.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from .activations import read_point, write_json
from .atomic import atomic_output

log = logging.getLogger(__name__)
BLOCK_BYTES = 32 << 20  # float64 bytes per block when streaming over a large matrix


def blocks(x: np.ndarray) -> list[slice]:
    """Row slices of ``x`` whose float64 copies hold about ``BLOCK_BYTES``."""
    rows = max(1, BLOCK_BYTES // (8 * max(1, x.shape[1])))
    return [slice(i, i + rows) for i in range(0, len(x), rows)]


def standardise_(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``x = (x - mean) / scale`` in place, block by block; returns ``x``."""
    for b in blocks(x):
        x[b] -= mean
        x[b] /= scale
    return x


def column_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and standard deviation (float64 accumulation, float32 result).

    A column counts as constant (scale 1, so it stays zero after centring) when
    its spread is within float32 rounding of its mean; the test is relative to
    each column, so the tiny but informative activations of a very deep
    network (norms of 1e-13 and less) are still standardised to unit spread.
    """
    total = np.zeros(x.shape[1])
    for b in blocks(x):
        total += x[b].sum(axis=0, dtype=np.float64)
    mean = total / len(x)
    sq = np.zeros(x.shape[1])
    for b in blocks(x):
        d = x[b].astype(np.float64) - mean
        sq += np.einsum("ij,ij->j", d, d)
    std = np.sqrt(sq / len(x))
    constant = std <= np.maximum(1e-6 * np.abs(mean), np.finfo(np.float32).tiny)
    scale = np.where(constant, 1.0, std)
    return mean.astype(np.float32), scale.astype(np.float32)


def mean_row_norm(x: np.ndarray) -> float:
    """Mean Euclidean norm of the rows of ``x`` (block by block, float64 accumulation)."""
    total = 0.0
    for b in blocks(x):
        block = x[b].astype(np.float64)
        total += float(np.sqrt(np.einsum("ij,ij->i", block, block)).sum())
    return total / len(x)


def scores(x: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """Class scores ``x @ coef.T + intercept``, one column per class (scikit-learn keeps a
    single column for binary problems: the first class's score is then 0)."""
    z = x @ coef.T + intercept
    return np.hstack([np.zeros_like(z), z]) if z.shape[1] == 1 else z


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


class LinearProbe:
    """A multinomial logistic-regression probe (scikit-learn's convex ``LogisticRegression``).

    Parameters: ``Cs`` the grid of inverse regularisation strengths; ``solver``
    one of ``lbfgs``, ``sag``, ``saga``; ``tol`` and ``max_iter`` per fit;
    ``standardize``; ``patience`` (grid points without validation improvement
    before the walk stops; ``None`` walks the whole grid); ``random_state``.
    """

    def __init__(
        self,
        Cs: list[float] | tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0),
        solver: str = "lbfgs",
        tol: float = 1e-4,
        max_iter: int = 200,
        standardize: bool = True,
        patience: int | None = 1,
        random_state: int = 0,
    ) -> None:
        self.Cs, self.solver, self.tol, self.max_iter = Cs, solver, tol, max_iter
        self.standardize, self.patience, self.random_state = standardize, patience, random_state

    def fit(self, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, copy: bool = True) -> LinearProbe:
        """Fit one probe per C on ``(x, y)``; keep the one with the lowest validation error.

        With ``copy=False`` the float32 arrays ``x`` and ``x_val`` are standardised
        in place (no second copy of a wide activation matrix is made).
        Sets ``C_``, ``coef_``, ``intercept_``, ``classes_``, ``n_iter_``,
        ``converged_``, ``path_`` (one record per C tried), ``train_error_``,
        ``train_loss_``, ``val_error_``, ``val_loss_`` and ``fit_seconds_``.
        """
        if not len(self.Cs):
            raise ValueError("Cs: empty grid; expected at least one C > 0")
        t0 = time.time()
        x = np.array(x, dtype=np.float32, copy=copy)
        x_val = np.array(x_val, dtype=np.float32, copy=copy)
        if self.standardize:
            mean, scale = column_stats(x)
        else:
            mean, scale = np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32)
        standardise_(x, mean, scale)
        standardise_(x_val, mean, scale)
        clf = LogisticRegression(
            solver=self.solver, tol=self.tol, max_iter=self.max_iter, warm_start=True, random_state=self.random_state
        )
        self.path_: list[dict] = []
        grid = sorted(self.Cs)
        middle = (len(grid) - 1) // 2
        best = None  # (key, record, coef, intercept); key orders by val error, val loss, then smaller C
        middle_solution = None
        for down, walk in enumerate((grid[middle:], grid[:middle][::-1])):  # middle -> weakest, middle -> strongest
            if down:  # warm-start the walk down from the middle C's solution
                clf.coef_, clf.intercept_ = middle_solution
            since_best = 0
            for C in walk:
                record = self._fit_one(clf, C, x, y, x_val, y_val)
                key = (record["val_error"], record["val_loss"], record["C"])
                if C == grid[middle]:
                    middle_solution = (clf.coef_.copy(), clf.intercept_.copy())
                if best is None or key < best[0]:
                    best, since_best = (key, record, clf.coef_.copy(), clf.intercept_.copy()), 0
                else:
                    since_best += 1
                    if self.patience is not None and since_best >= self.patience:
                        break
        _, record, coef, intercept = best
        self.C_, self.n_iter_, self.converged_ = record["C"], record["n_iter"], record["converged"]
        self.classes_ = clf.classes_
        self.val_error_, self.val_loss_ = record["val_error"], record["val_loss"]
        self.train_error_, self.train_loss_ = self._metrics(coef, intercept, self.classes_, x, y)
        # fold the standardisation into the weights: w.(x - m)/s + b = (w/s).x + (b - (w/s).m)
        self.coef_ = (coef / scale).astype(np.float32)
        self.intercept_ = (intercept - self.coef_.astype(np.float64) @ mean).astype(np.float32)
        self.fit_seconds_ = time.time() - t0
        return self

    def _fit_one(self, clf: LogisticRegression, C: float, x, y, x_val, y_val) -> dict:
        """Fit ``clf`` at ``C`` (warm-started from its current solution); record the fit in ``path_``."""
        t0 = time.time()
        clf.set_params(C=C)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            clf.fit(x, y)
        n_iter = int(np.max(clf.n_iter_))
        converged = n_iter < self.max_iter and not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        val_error, val_loss = self._metrics(clf.coef_, clf.intercept_, clf.classes_, x_val, y_val)
        record = {
            "C": float(C), "n_iter": n_iter, "converged": converged,
            "val_error": val_error, "val_loss": val_loss, "seconds": time.time() - t0,
        }  # fmt: skip
        self.path_.append(record)
        log.info("C=%g: %d iterations%s, val error %.4f, val loss %.4f (%.1f s)",
                 C, n_iter, "" if converged else " (NOT CONVERGED)", val_error, val_loss, record["seconds"])  # fmt: skip
        return record

    @staticmethod
    def _metrics(coef, intercept, classes, x, y) -> tuple[float, float]:
        """Error rate and mean cross-entropy of a linear model, block by block."""
        wrong, nll = 0, 0.0
        pos = np.searchsorted(classes, y)
        known = (pos < len(classes)) & (classes[np.minimum(pos, len(classes) - 1)] == y)
        coef = coef.astype(np.float32)
        for b in blocks(x):
            lp = log_softmax(scores(x[b], coef, intercept).astype(np.float64))
            p, k = pos[b], known[b]
            wrong += int(np.sum((lp.argmax(1) != p) | ~k))
            nll -= float(lp[np.arange(len(p))[k], p[k]].sum())
        # a label the probe never saw in training has zero probability under it
        return wrong / len(x), (nll / len(x) if known.all() else float("inf"))

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return np.vstack([scores(x[b], self.coef_, self.intercept_) for b in blocks(x)])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[self.decision_function(x).argmax(1)]

    def score(self, x: np.ndarray, y: np.ndarray) -> float:
        """Accuracy on ``(x, y)``, as scikit-learn's classifiers define ``score``."""
        return float(np.mean(self.predict(x) == y))

    def error_and_loss(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Error rate and mean cross-entropy on raw (unstandardised) ``(x, y)``."""
        return self._metrics(self.coef_, self.intercept_, self.classes_, x, y)


def fit_point(settings: dict, activations: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Fit the probe of one (experiment, repeat, checkpoint, point); return its metrics and weights.

    ``settings`` holds ``experiment, repeat, step, point, layer_index`` and
    ``probe`` (the ``LinearProbe`` parameters). The weights are the probe's
    raw-feature ``coef``, ``intercept``, ``classes`` and chosen ``C``.
    """
    point = settings["point"]
    expect = {"experiment": settings["experiment"], "step": settings["step"]}
    t0 = time.time()
    x, y = read_point(activations, "train", point, expect)
    x_val, y_val = read_point(activations, "val", point, expect)
    log.info("%s step %d %s: train %s, val %s (read in %.1f s)",
             settings["experiment"], settings["step"], point, x.shape, x_val.shape, time.time() - t0)  # fmt: skip
    activation_norm = mean_row_norm(x)  # before fit standardises x in place
    probe = LinearProbe(**settings["probe"]).fit(x, y, x_val, y_val, copy=False)
    del x, x_val
    x_test, y_test = read_point(activations, "test", point, expect)
    test_error, test_loss = probe.error_and_loss(x_test, y_test)
    result = {
        **{k: settings[k] for k in ("experiment", "repeat", "step", "point", "layer_index")},
        "width": int(probe.coef_.shape[1]), "activation_norm": activation_norm,
        "C": probe.C_, "solver": settings["probe"]["solver"],
        "train_error": probe.train_error_, "val_error": probe.val_error_, "test_error": test_error,
        "train_loss": probe.train_loss_, "val_loss": probe.val_loss_, "test_loss": test_loss,
        "n_iter": probe.n_iter_, "converged": probe.converged_, "fit_seconds": probe.fit_seconds_,
        "path": probe.path_, "warnings": [],
    }  # fmt: skip
    if not probe.converged_:
        msg = (f"probe did not converge at the chosen C={probe.C_:g} within max_iter="
               f"{settings['probe']['max_iter']} (tol={settings['probe']['tol']:g})")  # fmt: skip
        result["warnings"].append(msg)
        log.warning("%s step %d %s: %s", settings["experiment"], settings["step"], point, msg)
    log.info("%s step %d %s: C=%g train %.4f val %.4f test %.4f error (%d iterations, %.1f s)",
             settings["experiment"], settings["step"], point, probe.C_, probe.train_error_,
             probe.val_error_, test_error, probe.n_iter_, probe.fit_seconds_)  # fmt: skip
    weights = {"coef": probe.coef_, "intercept": probe.intercept_, "classes": probe.classes_, "C": np.float64(probe.C_)}
    return result, weights


def fit_points(settings: dict, activations: Path, out_json: Path, out_weights: Path) -> list[dict]:
    """Fit the probes of one probe job: some points of one (experiment, repeat, checkpoint).

    ``settings`` holds ``experiment, repeat, step`` and ``points``, a list of
    ``{point, layer_index, probe}``. Writes a JSON list of each point's metrics
    and one ``.npz`` whose arrays are named ``<point>.coef``, ``<point>.intercept``,
    ``<point>.classes`` and ``<point>.C``; both only once every probe is fitted.
    """
    common = {k: settings[k] for k in ("experiment", "repeat", "step")}
    results, arrays = [], {}
    for i, spec in enumerate(settings["points"], 1):
        log.info("probe %d/%d: %s", i, len(settings["points"]), spec["point"])
        result, weights = fit_point({**common, **spec}, activations)
        results.append(result)
        arrays.update({f"{spec['point']}.{k}": v for k, v in weights.items()})
    with atomic_output(out_weights) as tmp:
        np.savez(tmp, **arrays)
    write_json(results, out_json)
    return results
