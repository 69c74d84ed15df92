"""A probe job: fit the probes of some points of one checkpoint, score them, record why any is
not the best linear classifier (``status``), and store their weights (``weights.py``).

The estimator itself, ``LinearProbe``, is in ``estimator.py``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from .activations import open_point
from .arrays import resolve
from .estimator import SKLEARN_SOLVERS, LinearProbe, Rows, as_rows, metrics, row_summary
from .files import write_json
from .weights import previous_probes, probe_digest, save_weights

log = logging.getLogger(__name__)


def count_nonfinite(x) -> int:
    """Number of NaN or infinite entries of ``x`` (block by block)."""
    return sum(int(block.size - np.count_nonzero(np.isfinite(block))) for _, block in as_rows(x))


def log_prior(classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Intercept of the best constant classifier on labels ``y`` (log class frequencies; one
    column, the log odds of the second class, for two classes as scikit-learn keeps them)."""
    freq = np.bincount(np.searchsorted(classes, y), minlength=len(classes)) / len(y)
    logp = np.log(np.maximum(freq, 1e-12))
    return logp[1:] - logp[0] if len(classes) == 2 else logp


STATUSES = {
    "ok": "a converged fit at a C inside the walk's reach",
    "C_limit": "converged, but at the last C the walk could reach (see C_limit): the optimum may lie beyond",
    "not_converged": "the solver stopped at max_iter before its tolerance",
    "constant": "activations constant over the training rows: only class frequencies can be predicted",
    "single_class": "the training split has one class: no probe fitted",
    "nonfinite": "NaN or infinite activations (a diverged model): no probe fitted",
}


def probe_status(degenerate: str, constant: bool, converged: bool, C_limit: str) -> str:
    """The first that applies of ``STATUSES``, most serious first."""
    if degenerate:
        return degenerate
    return "constant" if constant else "not_converged" if not converged else "C_limit" if C_limit else "ok"


def prior_probe(classes: np.ndarray, y: np.ndarray, labels: list[np.ndarray], width: int) -> tuple[dict, dict]:
    """The fit record and weights of the class-prior classifier (no features), for a probe that
    cannot be fitted: not converged, C NaN, errors and losses on each split of ``labels``."""
    fit = {"C": np.nan, "n_iter": 0, "converged": False, "fit_seconds": 0.0, "path": [], "reduced_rank": None,
           "C_limit": "", "gap_bound": None}  # fmt: skip
    for split, lab in zip(("train", "val", "test"), labels):
        if len(classes) == 1:  # always that class
            wrong = lab != classes[0]
            fit[f"{split}_error"], fit[f"{split}_loss"] = float(wrong.mean()), float("inf") if wrong.any() else 0.0
        else:
            fit[f"{split}_error"], fit[f"{split}_loss"] = metrics(np.zeros((len(log_prior(classes, y)), 0)),
                                                                  log_prior(classes, y), classes,
                                                                  np.zeros((len(lab), 0), np.float32), lab)  # fmt: skip
    k = 1 if len(classes) <= 2 else len(classes)
    intercept = log_prior(classes, y) if len(classes) > 1 else np.zeros(1)
    return fit, {"coef": np.zeros((k, width)), "intercept": intercept}


def fit_point(
    settings: dict, activations: Path, init: dict | None = None, device: str = "cpu", first: dict | None = None
) -> tuple[dict, dict[str, np.ndarray]]:
    """Fit the probe of one (experiment, repeat, checkpoint, point); return its metrics and weights.

    ``settings`` holds ``experiment, repeat, step, point, layer_index`` and
    ``probe`` (the ``LinearProbe`` parameters, plus ``memory_budget_mb`` and
    ``warm_start``, which concern the job). The weights are the probe's
    raw-feature ``coef``, ``intercept``, ``classes``, chosen ``C``, ``converged`` and
    ``reduced_rank`` (-1: none), and a ``digest`` of the probe settings, activations and
    labels. ``first``, such a record of the point's probe at the experiment's first
    checkpoint, and ``init``, the previous checkpoint's with ``warm_start``: one whose digest
    is this one's and which converged is reused as it is (scored again, no fit): the same
    settings and data, the same probe. Otherwise ``init`` warm-starts the
    fit (``LinearProbe.fit``). Activations with NaN or infinite entries (an exploded
    model) get no fit: the probe is the constant class-prior classifier, at chance
    level, with a warning. ``device`` is where the solver's products run (``LinearProbe``);
    how the probe is fitted, not what it is, so it is no part of ``settings``.
    """
    point, params = settings["point"], dict(settings["probe"])
    budget_mb = params.pop("memory_budget_mb", 0)
    params.pop("warm_start", False)  # the job's chain (fit_points), not the estimator's
    expect = {"experiment": settings["experiment"], "step": settings["step"]}
    where = f"{settings['experiment']} step {settings['step']} {point}"
    warnings: list[str] = []
    t0 = time.time()
    with open_point(activations, "train", point, expect) as (train, y), \
         open_point(activations, "val", point, expect) as (val, y_val), \
         open_point(activations, "test", point, expect) as (test, y_test):  # fmt: skip
        float32_mb = 4 * train.shape[0] * train.shape[1] / 2**20  # in memory: float32 whatever the file's dtype
        out_of_core = params["solver"] not in SKLEARN_SOLVERS and 0 < budget_mb < float32_mb
        if out_of_core:  # stream both splits from HDF5 block by block
            x, x_val = Rows(train), Rows(val)
        else:
            x, x_val = np.empty(train.shape, np.float32), np.empty(val.shape, np.float32)
            train.read_direct(x)
            val.read_direct(x_val)
        log.info("%s: train %s, val %s, %s (%.1f s)", where, train.shape, val.shape,
                 "streamed from HDF5 (over memory_budget_mb)" if out_of_core else "read into memory",
                 time.time() - t0)  # fmt: skip
        activation_norm, constant = row_summary(x)  # before a scikit-learn fit standardises x in place
        nonfinite = {
            "train": 0 if np.isfinite(activation_norm) else count_nonfinite(x),
            "val": count_nonfinite(x_val),
            "test": count_nonfinite(Rows(test)),
        }
        splits = [(x, y), (x_val, y_val), (Rows(test), y_test)]
        digest = probe_digest(settings["probe"], splits)
        same = next((r for r in (first, init) if r and r["digest"] == digest and r["converged"]), None)
        classes = np.unique(y)
        degenerate = "nonfinite" if any(nonfinite.values()) else "single_class" if len(classes) < 2 else ""
        start = "cold" if init is None or degenerate else "warm"
        if degenerate:  # no fit: the class-prior classifier, scored without features
            if degenerate == "nonfinite":
                counts = ", ".join(f"{n} in {split}" for split, n in nonfinite.items() if n)
                warnings.append(f"activations contain NaN or infinite values ({counts}): "
                                "no probe fitted; errors are those of the class-prior classifier (chance level)")  # fmt: skip
            else:
                warnings.append(f"the training split has {len(y)} row(s), all of class {classes[0]}: no probe fitted; "
                                "errors are those of always predicting it")  # fmt: skip
            fit, weights = prior_probe(classes, y, [y, y_val, y_test], train.shape[1])
        elif same is not None:  # the settings and data a stored probe was fitted with
            start, t1 = "reused", time.time()
            coef, intercept = same["coef"], same["intercept"]
            weights = {"coef": coef, "intercept": intercept}
            fit = {"C": same["C"], "n_iter": 0, "converged": True, "path": [], "reduced_rank": same["reduced_rank"],
                   "C_limit": same["C_limit"], "gap_bound": None}  # fmt: skip
            for split, (xs, labels) in zip(("train", "val", "test"), splits):
                fit[f"{split}_error"], fit[f"{split}_loss"] = metrics(coef, intercept, classes, xs, labels)
            fit["fit_seconds"] = time.time() - t1
            log.info("%s: settings, activations and labels identical to %s's: its probe reused", where, same["source"])
        else:
            probe = LinearProbe(**params, device=device).fit(x, y, x_val, y_val, copy=False, init=init)
            classes = probe.classes_
            fit = {"C": probe.C_, "n_iter": probe.n_iter_, "converged": probe.converged_, "path": probe.path_,
                   "fit_seconds": probe.fit_seconds_, "train_error": probe.train_error_, "train_loss": probe.train_loss_,
                   "val_error": probe.val_error_, "val_loss": probe.val_loss_,
                   "reduced_rank": probe.reduced_rank_, "C_limit": probe.C_limit_,
                   "gap_bound": probe.gap_bound_}  # fmt: skip
            if probe.C_limit_:
                end = "largest" if probe.C_limit_ == "upper" else "smallest"
                warnings.append(f"the chosen C={probe.C_:g} is the {end} the walk could reach (Cs extended by "
                                f"extend_decades={probe.extend_decades}): the validation optimum may lie beyond")  # fmt: skip
            fit["test_error"], fit["test_loss"] = probe.error_and_loss(Rows(test), y_test)
            weights = {"coef": probe.coef_, "intercept": probe.intercept_}
        if constant and not degenerate:
            warnings.append("activations are constant over the training rows: "
                            "the probe can only predict class frequencies (chance level)")  # fmt: skip
        if not fit["converged"] and not degenerate:
            warnings.append(f"probe did not converge at the chosen C={fit['C']:g} within max_iter="
                            f"{params['max_iter']} (tol={params['tol']:g})")  # fmt: skip
        del x, x_val
    result = {
        **{k: settings[k] for k in ("experiment", "repeat", "step", "point", "layer_index")},
        "width": int(train.shape[1]), "activation_norm": activation_norm, "solver": params["solver"], **fit,
        "out_of_core": out_of_core, "start": start, "nonfinite": nonfinite, "warnings": warnings,
        "status": probe_status(degenerate, constant, fit["converged"], fit["C_limit"]),
    }  # fmt: skip
    for msg in warnings:
        log.warning("%s: %s", where, msg)
    log.info("%s: C=%g train %.4f val %.4f test %.4f error (%d iterations, %.1f s)", where, fit["C"],
             fit["train_error"], fit["val_error"], fit["test_error"], fit["n_iter"], fit["fit_seconds"])  # fmt: skip
    stored = {**weights, "classes": classes, "C": np.float64(fit["C"]), "converged": np.bool_(fit["converged"]),
              "C_limit": np.str_(fit["C_limit"]),
              "reduced_rank": np.int64(-1 if fit["reduced_rank"] is None else fit["reduced_rank"])}  # fmt: skip
    return result, {**stored, "digest": np.str_(digest)}


def fit_points(
    settings: dict,
    activations: Path,
    out_json: Path,
    out_weights: Path,
    warm_from: Path | None = None,
    device: str = "cpu",
    reuse_from: Path | None = None,
) -> list[dict]:
    """Fit the probes of one probe job: some points of one (experiment, repeat, checkpoint).

    ``settings`` holds ``experiment, repeat, step`` and ``points``, a list of
    ``{point, layer_index, probe}``. Writes a JSON list of each point's metrics
    and one ``.npz`` whose arrays are named ``<point>.coef``, ``<point>.intercept``,
    ``<point>.classes``, ``<point>.C`` and the rest of ``fit_point``'s record; both
    only once every probe is fitted. ``warm_from``, such an ``.npz`` of the same
    points (the previous checkpoint's job), gives each probe its ``init`` there
    (none where that probe had no fit: non-finite activations). ``reuse_from``, such an ``.npz``
    (the same job's at the experiment's first checkpoint), offers its probes for reuse where
    nothing changed (``fit_point``'s ``first``): the input, a frozen layer. ``device``:
    ``fit_point``'s, checked before any probe is fitted (``cuda`` where there is none is an
    error at once).
    """
    device = resolve(device)
    log.info("probe solver device: %s", {"cpu": "cpu (NumPy)"}.get(device, device))
    common = {k: settings[k] for k in ("experiment", "repeat", "step")}
    names = [spec["point"] for spec in settings["points"]]
    previous = previous_probes(warm_from, names) if warm_from else {}
    first = previous_probes(reuse_from, names) if reuse_from else {}
    results, arrays = [], {}
    for i, spec in enumerate(settings["points"], 1):
        log.info("probe %d/%d: %s%s", i, len(settings["points"]), spec["point"],
                 " (warm start)" if previous.get(spec["point"]) else "")  # fmt: skip
        result, weights = fit_point({**common, **spec}, activations, previous.get(spec["point"]), device,
                                    first.get(spec["point"]))  # fmt: skip
        results.append(result)
        arrays.update({f"{spec['point']}.{k}": v for k, v in weights.items()})
    save_weights(arrays, out_weights)
    write_json(results, out_json)
    return results
