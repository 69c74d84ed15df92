"""Probe-solver benchmark: every method on the same objective, scored in float64 against a tight reference.

Usage: ``snakemake --cores 1 probe_benchmark`` (workflow/rules/benchmark.smk) on the
pipeline's own activation files, with the experiments' probe settings; by hand:

    python benchmarks/probe_benchmark.py --probe-settings SETTINGS.json \\
        --case init/fc1=results/mnist_convnet/r0/activations/step0.h5:fc1_postact ... \\
        [--rows init/conv1=10000] [--repeats 3] [--out results/probe_benchmark]

``SETTINGS.json`` (or a JSON string) maps each case name to its experiment's
probe settings (``Experiment.probe_settings(point)``). ``--rows NAME=N`` fits a
case on its first N training rows (validation and test splits whole).

The objective is the probe's (scikit-learn's ``LogisticRegression``): features
standardised by the training rows' mean and scale (``feature_stats``, as
``LinearProbe`` with ``standardize: true``), mean cross-entropy plus
``|W|^2 / (2 C n)``. Every method fits exactly that problem, and every solution
is scored in float64 on it. Per case (an activation file and probe point):

1. ``project_walk``: ``LinearProbe`` with the experiment's settings, the whole C
   walk. Its C is "the C the pipeline chooses".
2. At that C and at C=1, single-C fits by each method, each in its own
   single-threaded process (OpenBLAS, OpenMP, MKL, torch, oneDAL at one thread):
   ``project`` (``LinearProbe`` with ``Cs: [C]``); ``sklearn_default``
   (``LogisticRegression(solver="lbfgs")``, tol 1e-4; max_iter 100, raised to
   10,000 only where 100 stops it short of its tol); ``sklearn_tuned`` (lbfgs at
   the largest tol of TOLS whose stop is within 1e-4 of the reference, found from
   the trace of one lbfgs run at tol 1e-8); ``cyanure`` (``Classifier``,
   multinomial logistic, lambda = 1/(C n), tol 1e-4 on its relative duality gap,
   solver ``auto``, ``n_threads=1``); ``sklearnex`` and ``sklearnex_tuned``
   (scikit-learn-intelex's patched ``LogisticRegression`` at tol 1e-4 and at the
   tuned tol, oneDAL at one thread); ``rmsprop`` (the seeds' minibatch RMSProp
   on raw features with early stopping; at the chosen C only: it has no C).
   Methods alternate within each repeat (the order rotates); medians are reported.
3. ``reference``: scikit-learn lbfgs in float64 (tol 1e-10, up to 5,000
   iterations) from the trace run's end; its final gradient norms are reported.
   The gap of a solution is ``(f - f_ref) / f_ref``.
4. ``sklearn_grid``: a warm-started scikit-learn lbfgs grid over the same Cs
   (ascending) at the tuned tol, C chosen by validation error; and, where ``sklearnex``
   is among the methods, ``sklearnex_walk``: ``project_walk`` with ``solver: sklearnex``
   (the same walk, every C fitted by oneDAL's lbfgs on all rows); alternated with
   repeats of ``project_walk``.

Time to a gap of 1e-4: the CPU time at the first iterate within 1e-4 of the
reference, from each run's trace (L-BFGS iterates of the project's solver and of
scikit-learn, cyanure's duality-gap checks), or, for scikit-learn-intelex, the
cheaper of its two runs that ended within it. Writes ``table.csv``,
``selection.csv``, ``reference.csv``, ``table.md`` and ``benchmark.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

TARGET_GAP = 1e-4
TOLS = (1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7, 3e-8, 1e-8)  # sklearn_tuned's candidates
TRACE_TOL = 1e-8
FIT_METHODS = ("project", "sklearn_default", "sklearn_tuned", "cyanure", "sklearnex", "sklearnex_tuned", "rmsprop")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
COLUMNS = ("case", "width", "rows", "C", "which_C", "method", "settings", "repeats", "cpu_s", "wall_s",
           "iterations", "gap", "cpu_to_gap_1e-4_s", "ratio_to_best", "ratio_to_best_to_gap", "test_error",
           "val_error", "peak_rss_mb", "load_avg")  # fmt: skip
SELECTION_COLUMNS = ("case", "width", "rows", "method", "tol", "repeats", "C", "C_limit", "fits", "cpu_s", "wall_s",
                     "val_error", "test_error", "peak_rss_mb")  # fmt: skip
REFERENCE_COLUMNS = ("case", "C", "objective", "grad_max", "grad_norm", "iterations", "cpu_s", "start", "min_gap")


# ---------------------------------------------------------------- the objective, in float64


def load(path: str, split: str, point: str, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    from probes.activations import read_point

    x, y = read_point(Path(path), split, point)
    return (x, y) if rows is None or rows >= len(y) else (x[:rows].copy(), y[:rows].copy())


def std_scores(x: np.ndarray, w: np.ndarray, b: np.ndarray, mean, scale) -> np.ndarray:
    """Class scores of standardised weights ``w`` (k, d), ``b`` (k,) on raw rows ``x``, in float64."""
    return ((x.astype(np.float64) - mean) / scale) @ w.T + b


def std_eval(x, y_index, w, b, mean, scale, grad: bool = False, block: int = 2000):
    """Mean cross-entropy, error rate and (if asked) the gradient of the mean cross-entropy, float64."""
    n, nll, wrong = len(y_index), 0.0, 0
    gw, gb = (np.zeros_like(w), np.zeros_like(b)) if grad else (None, None)
    for i in range(0, n, block):
        xs = (x[i : i + block].astype(np.float64) - mean) / scale
        z = xs @ w.T + b
        yi = y_index[i : i + block]
        z -= z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        nll += float((lse - z[np.arange(len(yi)), yi]).sum())
        wrong += int(np.sum(z.argmax(1) != yi))
        if grad:
            p = np.exp(z - lse[:, None])
            p[np.arange(len(yi)), yi] -= 1.0
            gw += p.T @ xs
            gb += p.sum(axis=0)
    if grad:
        return nll / n, wrong / n, gw / n, gb / n
    return nll / n, wrong / n


def std_objective(x, y_index, w, b, mean, scale, C) -> float:
    return std_eval(x, y_index, w, b, mean, scale)[0] + float(np.sum(w * w)) / (2 * C * len(y_index))


def objective(x, y, coef, intercept, mean, scale, C) -> float:
    """The project's objective of a raw-feature model: mean loss + ||coef * scale||^2 / (2 C n)
    (``y``: class indices 0..k-1)."""
    from probes.estimator import standardise

    w, b = standardise(coef, intercept, mean, scale)
    if w.shape[0] == 1:  # binary, scikit-learn's one column: class 0 scores 0
        w, b = np.vstack([np.zeros_like(w), w]), np.concatenate([[0.0], b])
        return std_eval(x, np.asarray(y), w, b, mean, scale)[0] + float(np.sum(w * w)) / (2 * C * len(y))
    return std_objective(x, np.asarray(y), w, b, mean, scale, C)


# ---------------------------------------------------------------- children: one fit per process


def peak_rss_mb(pid: int) -> float | None:
    """A process's peak resident memory (VmHWM), in MB (not getrusage: Linux carries ru_maxrss
    across fork and exec)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Trace:
    """(CPU seconds since the fit began, objective, max |gradient|) after each L-BFGS iteration of
    scipy's ``minimize`` (patched in), tagged with what the caller says the objective is."""

    def __init__(self, t0: float) -> None:
        self.t0, self.rows, self.tag, self.mismatch = t0, [], None, 0

    def patch(self, module) -> None:
        import inspect

        original = module.minimize
        trace = self

        def minimize(fun, x0, *args, callback=None, **kwargs):
            last = {}

            def wrapped(u, *a):
                f, g = fun(u, *a)
                last.update(f=float(f), g=float(np.max(np.abs(g))))
                if "started" not in last:  # the start point: the first evaluation
                    last["started"] = True
                    trace.rows.append((time.process_time() - trace.t0, last["f"], last["g"], trace.tag))
                return f, g

            wants_result = callback is not None and list(inspect.signature(callback).parameters) == [
                "intermediate_result"
            ]

            def cb(intermediate_result):
                if last.get("f") != float(intermediate_result.fun):
                    trace.mismatch += 1
                trace.rows.append((time.process_time() - trace.t0, float(intermediate_result.fun),
                                   last.get("g", np.nan), trace.tag))  # fmt: skip
                if callback is not None:
                    callback(intermediate_result if wants_result else intermediate_result.x)

            return original(wrapped, x0, *args, callback=cb, **kwargs)

        module.minimize = minimize


def one_thread() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def standardised(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x`` standardised in place by its own ``feature_stats`` (as ``LinearProbe`` does for
    scikit-learn's solvers), with that mean and scale."""
    from probes.solver import Rows, feature_stats

    mean, scale, _ = feature_stats(Rows(x), False)
    for _, block in Rows(x):
        block -= mean.astype(np.float32)
        block /= scale.astype(np.float32)
    return x, mean, scale


def sklearn_fit(x, y, C, tol, max_iter, start=None):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, tol=tol, max_iter=max_iter, warm_start=start is not None)
    if start is not None:
        clf.coef_, clf.intercept_ = start
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return clf.coef_.astype(np.float64), clf.intercept_.astype(np.float64), int(np.max(clf.n_iter_))


def child_fit(spec: dict) -> dict:
    """One fit: ``spec`` names the method, data, C and settings; returns the result (standardised
    weights in ``w``, ``b``)."""
    method, probe = spec["method"], spec.get("probe", {})
    if method.startswith("sklearnex"):
        import daal4py

        daal4py.daalinit(1)
        from sklearnex import patch_sklearn

        patch_sklearn(verbose=False)
    one_thread()
    import scipy.optimize

    import probes.estimator
    import probes.solver
    from probes.estimator import LinearProbe, metrics, standardise
    from probes.solver import Rows, feature_stats

    x, y = load(spec["file"], "train", spec["point"], spec.get("rows"))
    xv, yv = load(spec["file"], "val", spec["point"])
    classes, y_index = np.unique(y, return_inverse=True)
    out: dict = {"info": {}}
    t0, w0 = time.process_time(), time.perf_counter()
    trace = Trace(t0)
    n = len(y)
    C = spec.get("C")
    if method in ("project", "project_walk", "sklearnex_walk"):
        import inspect

        accepted = inspect.signature(LinearProbe).parameters  # the settings LinearProbe takes (not job layout)
        params = {k: v for k, v in probe.items() if k in accepted}
        if method == "project":
            params["Cs"] = [C]
        if method == "sklearnex_walk":  # the same walk, each C fitted by oneDAL's lbfgs
            params["solver"] = "sklearnex"
        trace.patch(probes.solver)
        original = probes.estimator.fit_logistic

        def tagged(rows, y_, k, lam, *a, **kw):  # tag each solve: is it the full objective at C?
            trace.tag = (rows.n == n, lam)
            return original(rows, y_, k, lam, *a, **kw)

        probes.estimator.fit_logistic = tagged
        p = LinearProbe(**params).fit(x, y, xv, yv)
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        mean, scale, _ = feature_stats(Rows(x), False)
        w, b = standardise(p.coef_, p.intercept_, mean, scale)
        out["info"] = {"C": p.C_, "C_limit": p.C_limit_, "fits": len(p.path_), "path": p.path_,
                       "reduced_rank": p.reduced_rank_}  # fmt: skip
        iterations = sum(r["n_iter"] for r in p.path_)
        lam = None if C is None else 1.0 / (C * n)
        # only solves on every row at this C's penalty (not the subsample's walk) are the objective scored
        out["trace"] = [(t, f, g) for t, f, g, tag in trace.rows
                        if tag is not None and tag[0] and lam is not None and np.isclose(tag[1], lam, rtol=1e-12)]  # fmt: skip
    elif method in ("sklearn_default", "sklearn_tuned", "sklearn_trace", "sklearnex", "sklearnex_tuned"):
        trace.patch(scipy.optimize)  # scikit-learn calls scipy.optimize.minimize by attribute
        xs, mean, scale = standardised(x)
        start = None
        if spec.get("start"):
            s = np.load(spec["start"])
            start = (s["w"].astype(np.float32), s["b"].astype(np.float32))
        w, b, iterations = sklearn_fit(xs, y, C, spec["tol"], spec["max_iter"], start)
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        out["trace"] = [(t, f, g) for t, f, g, _ in trace.rows]
        out["info"] = {"max_iter": spec["max_iter"], "tol": spec["tol"]}
    elif method == "reference":  # float64, from a given start
        x64 = (x.astype(np.float64) - (m := feature_stats(Rows(x), False))[0]) / m[1]
        mean, scale = m[0], m[1]
        del x
        s = np.load(spec["start"])
        w, b, iterations = sklearn_fit(x64, y, C, 1e-10, spec.get("max_iter", 5000), (s["w"], s["b"]))
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        del x64
        x, _ = load(spec["file"], "train", spec["point"], spec.get("rows"))
        _, _, gw, gb = std_eval(x, y_index, w, b, mean, scale, grad=True)
        gw += w / (C * n)
        g = np.concatenate([gw.ravel(), gb])
        out["info"] = {"grad_max": float(np.abs(g).max()), "grad_norm": float(np.linalg.norm(g))}
        out["trace"] = []
    elif method == "cyanure":
        from cyanure.estimators import Classifier

        xs, mean, scale = standardised(x)
        clf = Classifier(loss="logistic", penalty="l2", lambda_1=1.0 / (C * n), fit_intercept=True, tol=spec["tol"],
                         solver="auto", n_threads=1, verbose=False, max_iter=spec["max_iter"], random_state=0)  # fmt: skip
        t_pre = time.process_time() - t0
        clf.fit(xs, y)
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        w, b = clf.coef_.T.astype(np.float64), np.ravel(clf.intercept_).astype(np.float64)
        info = clf.optimization_info_[0]  # rows: epoch, primal, dual, relative gap, -, seconds
        done = info[0] > 0
        iterations = int(info[0][done][-1]) if done.any() else 0
        # its checks' own clock, scaled to this process's CPU time of the solve
        solve_clock = float(info[5][done][-1]) if done.any() else 0.0
        factor = (cpu - t_pre) / solve_clock if solve_clock > 0 else 1.0
        out["trace"] = [(t_pre + float(s) * factor, float(f), float(gap)) for s, f, gap in
                        zip(info[5][done], info[1][done], info[3][done], strict=True)]  # fmt: skip
        out["info"] = {"tol": spec["tol"], "max_iter": spec["max_iter"], "solver": "auto", "n_threads": 1,
                       "duality_gap_interval": clf.duality_gap_interval, "epochs": iterations}  # fmt: skip
    elif method == "rmsprop":
        coef, intercept, iterations = fit_rmsprop(x, y, xv, yv, probe.get("random_state", 0))
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        mean, scale, _ = feature_stats(Rows(x), False)
        w, b = standardise(coef, intercept, mean, scale)
        out["trace"] = []
    elif method == "sklearn_grid":
        xs, mean, scale = standardised(x)
        best, start, fits = None, None, 0
        for c in sorted(probe["Cs"]):
            w_, b_, _ = sklearn_fit(xs, y, c, spec["tol"], spec["max_iter"], start)
            fits += 1
            start = (w_.astype(np.float32), b_.astype(np.float32))
            raw = (w_ / scale, b_ - (w_ / scale) @ mean)
            err, loss = metrics(*raw, classes, xv, yv)
            if best is None or (err, loss, c) < best[:3]:
                best = (err, loss, c, w_, b_)
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        w, b, iterations = best[3], best[4], 0
        out["info"] = {"C": best[2], "C_limit": "", "fits": fits, "tol": spec["tol"]}
        out["trace"] = []
    else:
        raise ValueError(f"unknown method {method!r}")
    from threadpoolctl import threadpool_info

    out.update(
        cpu_s=cpu, wall_s=wall, iterations=int(iterations), peak_rss_mb=peak_rss_mb(os.getpid()),
        load_avg=os.getloadavg()[0], trace_mismatch=trace.mismatch,
        threads=sorted({(i["internal_api"], i["num_threads"]) for i in threadpool_info()}),
    )  # fmt: skip
    np.savez(spec["result"], w=np.asarray(w, np.float64), b=np.asarray(b, np.float64))
    return out


def fit_rmsprop(x, y, xv, yv, seed: int, max_epochs: int = 10, patience: int = 3) -> tuple:
    """The seeds' probe: a linear layer on raw features, minibatch RMSProp (lr 5e-4, decay 0.9,
    momentum 0.9, centred, batch 32), early stopping on validation error (patience 3, at most 10 epochs)."""
    import torch

    torch.manual_seed(seed)
    classes, y_index = np.unique(y, return_inverse=True)
    xt, yt, xvt = torch.from_numpy(x), torch.from_numpy(y_index).long(), torch.from_numpy(xv)
    yv_index = np.searchsorted(classes, yv)
    layer = torch.nn.Linear(x.shape[1], len(classes))
    opt = torch.optim.RMSprop(layer.parameters(), lr=5e-4, alpha=0.9, eps=1e-6, momentum=0.9, centered=True)
    best, since, steps = (2.0, None), 0, 0
    for _ in range(max_epochs):
        for idx in torch.randperm(len(xt)).split(32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(layer(xt[idx]), yt[idx]).backward()
            opt.step()
            steps += 1
        with torch.no_grad():
            err = float((layer(xvt).argmax(1).numpy() != yv_index).mean())
        if err < best[0]:
            best, since = (err, {k: v.detach().clone() for k, v in layer.state_dict().items()}), 0
        else:
            since += 1
            if since >= patience:
                break
    return best[1]["weight"].double().numpy(), best[1]["bias"].double().numpy(), steps


# ---------------------------------------------------------------- the parent: cases, repeats, scoring


class Runner:
    def __init__(self, out: Path, timeout: float, resume: bool, reuse_only: bool = False) -> None:
        self.out, self.timeout, self.resume, self.reuse_only = out, timeout, resume or reuse_only, reuse_only

    def run(self, key: str, spec: dict) -> dict | None:
        """Run one child (or reuse its result with ``--resume``); None if it failed or timed out."""
        base = self.out / "fits" / key
        base.parent.mkdir(parents=True, exist_ok=True)
        spec = {**spec, "result": str(base) + ".npz"}
        info = Path(str(base) + ".json")
        lock = Path(str(base) + ".lock")  # another parent's child on this fit: wait for it, then reuse
        while lock.exists() and Path(f"/proc/{lock.read_text().strip() or 0}").exists():
            time.sleep(5)
        if self.resume and info.exists():
            res = json.loads(info.read_text())
            print(f"{key}: reused ({res['cpu_s']:.1f} s CPU)", flush=True)
            return res
        if self.reuse_only:
            print(f"{key}: not run (--reuse-only)", flush=True)
            return None
        spec_file = Path(str(base) + ".spec.json")
        spec_file.write_text(json.dumps(spec))
        cmd = [sys.executable, __file__, "child", str(spec_file)]
        proc = subprocess.Popen(cmd, env={**os.environ, **ONE_THREAD})
        lock.write_text(str(proc.pid))
        try:
            if proc.wait(timeout=self.timeout):
                print(f"{key}: FAILED (exit {proc.returncode})", flush=True)
                return None
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            print(f"{key}: stopped after {self.timeout:.0f} s", flush=True)
            return None
        finally:
            lock.unlink(missing_ok=True)
        res = json.loads(info.read_text())
        print(f"{key}: {res['cpu_s']:.1f} s CPU, {res['wall_s']:.1f} s wall, {res['iterations']} iterations",
              flush=True)  # fmt: skip
        return res


def first_within(trace, f_ref: float, gap: float = TARGET_GAP) -> float | None:
    """CPU seconds at the first trace point within ``gap`` of ``f_ref`` (None if none)."""
    for t, f, _ in trace:
        if (f - f_ref) / abs(f_ref) <= gap:
            return t
    return None


def stop_index(trace, tol: float) -> int:
    """Where scipy's L-BFGS-B at ``tol`` stops on the path of a run at a tighter tol (``trace``): at the
    first iterate with max |g| <= tol, or where that run ended (a failed line search, max_iter)."""
    return next((i for i, (_, _, g) in enumerate(trace) if g <= tol), len(trace) - 1)


def tuned_tol(trace, f_ref: float) -> tuple[float, int] | None:
    """The largest of TOLS at which a run stops within TARGET_GAP of ``f_ref``, and its stop."""
    for tol in TOLS:
        stop = stop_index(trace, tol)
        if (trace[stop][1] - f_ref) / abs(f_ref) <= TARGET_GAP:
            return tol, stop
    return None


def median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def run_case(name: str, path: str, point: str, probe: dict, rows: int | None, repeats: int, runner: Runner,
             methods: tuple[str, ...], from_trace: bool = False, trace_max_iter: int = 20000,
             ref_max_iter: int = 5000) -> tuple[list, list, list]:  # fmt: skip
    """One case: the project's walk, then per C the trace run, the reference and the alternated repeats of
    ``methods``, then the C selections. With ``from_trace``, scikit-learn's two lbfgs rows are read off
    the trace run (its stops at their tol: the same iterates) instead of being run again."""
    from probes.estimator import metrics, unstandardise
    from probes.solver import Rows, feature_stats

    if runner.reuse_only and not (runner.out / "fits" / name.replace("/", "_") / "project_walk.r0.json").exists():
        print(f"{name}: no walk in {runner.out / 'fits'}: not tabulated", flush=True)
        return [], [], []
    x, y = load(path, "train", point, rows)
    xv, yv = load(path, "val", point)
    xt, yt = load(path, "test", point)
    classes, y_index = np.unique(y, return_inverse=True)
    mean, scale, _ = feature_stats(Rows(x), False)
    n, d = x.shape
    key = name.replace("/", "_")
    common = {"file": path, "point": point, "rows": rows, "probe": probe}

    def score(res: dict) -> dict:
        s = np.load(res["result_npz"])
        w, b = s["w"], s["b"]
        raw = unstandardise(w, b, mean, scale)
        return {"w": w, "b": b, "val_error": metrics(*raw, classes, xv, yv)[0],
                "test_error": metrics(*raw, classes, xt, yt)[0]}  # fmt: skip

    def run(k: str, spec: dict) -> dict | None:
        res = runner.run(f"{key}/{k}", {**common, **spec})
        if res is not None:
            res["result_npz"] = str(runner.out / "fits" / key / k) + ".npz"
            res.update(score(res))
        return res

    walks = {"project_walk": [run("project_walk.r0", {"method": "project_walk"})]}
    if walks["project_walk"][0] is None:
        return [], [], []
    chosen = walks["project_walk"][0]["info"]["C"]
    fit_rows, ref_rows, tols = [], [], {}
    for which, C in (("chosen", chosen), ("1", 1.0)) if chosen != 1.0 else (("chosen=1", 1.0),):
        tag = f"C{C:g}"
        trace_run = run(f"{tag}.sklearn_trace", {"method": "sklearn_trace", "C": C, "tol": TRACE_TOL,
                                                 "max_iter": trace_max_iter})  # fmt: skip
        ref = trace_run and run(
            f"{tag}.reference",
            {"method": "reference", "C": C, "start": trace_run["result_npz"], "max_iter": ref_max_iter},
        )
        if ref is None:
            print(f"{name} C={C:g}: no reference (the trace run or the reference failed); skipped", flush=True)
            continue
        f_ref = std_objective(x, y_index, ref["w"], ref["b"], mean, scale, C)
        found = tuned_tol(trace_run["trace"], f_ref)
        tol = found[0] if found else TRACE_TOL
        tols[C] = tol
        default_max_iter = 100 if stop_index(trace_run["trace"], 1e-4) <= 100 else 10000
        print(f"{name} C={C:g}: reference {f_ref:.10g} (|g|max {ref['info']['grad_max']:.1e}), tuned tol {tol:g}"
              f" (stop at iteration {found[1] if found else '-'}), default max_iter {default_max_iter}", flush=True)  # fmt: skip
        specs = {
            "project": {"method": "project", "C": C},
            "sklearn_default": {"method": "sklearn_default", "C": C, "tol": 1e-4, "max_iter": default_max_iter},
            "sklearn_tuned": {"method": "sklearn_tuned", "C": C, "tol": tol, "max_iter": 20000},
            "cyanure": {"method": "cyanure", "C": C, "tol": 1e-4, "max_iter": 500},
            "sklearnex": {"method": "sklearnex", "C": C, "tol": 1e-4, "max_iter": default_max_iter},
            "sklearnex_tuned": {"method": "sklearnex_tuned", "C": C, "tol": tol, "max_iter": 20000},
            "rmsprop": {"method": "rmsprop", "C": C},
        }
        names = [m for m in methods if m != "rmsprop" or which.startswith("chosen")]
        if from_trace:
            names = [m for m in names if m not in ("sklearn_default", "sklearn_tuned")]
        if tol >= 1e-4:  # its default tol already suffices for scikit-learn: no second intelex run
            names = [m for m in names if m != "sklearnex_tuned"]
        results = {m: [] for m in names}
        for r in range(repeats):
            order = names[r % len(names) :] + names[: r % len(names)]
            for m in order:
                if m != "rmsprop" or r == 0:  # RMSProp once: a foil, minutes on wide layers
                    results[m].append(run(f"{tag}.{m}.r{r}", specs[m]))
        ref_obj = {m: [std_objective(x, y_index, res["w"], res["b"], mean, scale, C) for res in rs if res]
                   for m, rs in results.items()}  # fmt: skip
        all_obj = [f for fs in ref_obj.values() for f in fs]
        ref_rows.append({"case": name, "C": C, "objective": f_ref, "grad_max": ref["info"]["grad_max"],
                         "grad_norm": ref["info"]["grad_norm"], "iterations": ref["iterations"],
                         "cpu_s": ref["cpu_s"], "start": "sklearn_trace end",
                         "min_gap": (min(all_obj) - f_ref) / abs(f_ref) if all_obj else None})  # fmt: skip
        for m, rs in results.items():
            ok = [res for res in rs if res]
            if not ok:
                fit_rows.append({"case": name, "width": d, "rows": n, "C": C, "which_C": which, "method": m,
                                 "repeats": 0, "settings": "failed or stopped"})  # fmt: skip
                continue
            gaps = [(f - f_ref) / abs(f_ref) for f in ref_obj[m]]
            to_gap = [first_within(res["trace"], f_ref) if res["trace"] else None for res in ok]
            if m.startswith("sklearnex"):  # no trace: its own end, where within the target
                to_gap = [res["cpu_s"] if g <= TARGET_GAP else None for res, g in zip(ok, gaps, strict=True)]
            settings = describe(m, specs[m], ok[0])
            fit_rows.append({
                "case": name, "width": d, "rows": n, "C": C, "which_C": which, "method": m, "settings": settings,
                "repeats": len(ok), "cpu_s": median([res["cpu_s"] for res in ok]),
                "wall_s": median([res["wall_s"] for res in ok]), "iterations": int(np.median([res["iterations"] for res in ok])),
                "gap": median(gaps), "cpu_to_gap_1e-4_s": median(to_gap) if all(t is not None for t in to_gap) else None,
                "test_error": ok[0]["test_error"], "val_error": ok[0]["val_error"],
                "peak_rss_mb": median([res["peak_rss_mb"] for res in ok]),
                "load_avg": median([res["load_avg"] for res in ok]),
            })  # fmt: skip
        if from_trace and trace_run:
            tr = trace_run["trace"]
            for m, t, cap in (("sklearn_default", 1e-4, default_max_iter), ("sklearn_tuned", tol, 20000)):
                k = min(stop_index(tr, t), cap)
                fit_rows.append({
                    "case": name, "width": d, "rows": n, "C": C, "which_C": which, "method": m, "repeats": 1,
                    "settings": f"lbfgs tol={t:g} max_iter={cap}: the trace run's stop at that tol (its objective "
                                "as scikit-learn computed it in float32; not run separately)",
                    "cpu_s": tr[k][0], "iterations": k, "gap": (tr[k][1] - f_ref) / abs(f_ref),
                    "cpu_to_gap_1e-4_s": first_within(tr[: k + 1], f_ref),
                    "peak_rss_mb": trace_run["peak_rss_mb"], "load_avg": trace_run["load_avg"],
                })  # fmt: skip
        sklearnex_rows = [
            r for r in fit_rows if r["case"] == name and r["C"] == C and r["method"].startswith("sklearnex")
        ]
        reached = [r["cpu_to_gap_1e-4_s"] for r in sklearnex_rows if r.get("cpu_to_gap_1e-4_s") is not None]
        for r in sklearnex_rows:  # the cheaper of its runs that ended within the target
            r["cpu_to_gap_1e-4_s"] = min(reached) if reached else None
        here = [r for r in fit_rows if r["case"] == name and r["C"] == C and r.get("cpu_s") is not None]
        within = [r["cpu_s"] for r in here if r["gap"] is not None and r["gap"] <= TARGET_GAP]
        to_gap = [r["cpu_to_gap_1e-4_s"] for r in here if r.get("cpu_to_gap_1e-4_s") is not None]
        for r in here:
            r["ratio_to_best"] = r["cpu_s"] / min(within) if within else None
            r["ratio_to_best_to_gap"] = (
                r["cpu_to_gap_1e-4_s"] / min(to_gap) if to_gap and r.get("cpu_to_gap_1e-4_s") else None
            )
    # the whole C selection: the project's walk against a warm scikit-learn grid at the tuned tol, alternated
    grid_tol = tols.get(chosen, TRACE_TOL)
    walks["sklearn_grid"] = []
    grid_spec = {"method": "sklearn_grid", "tol": grid_tol, "max_iter": 20000}
    onedal = "sklearnex" in methods  # then also the project's walk with solver: sklearnex
    if onedal:
        walks["sklearnex_walk"] = []
    for r in range(repeats):
        walks["sklearn_grid"].append(run(f"sklearn_grid.r{r}", grid_spec))
        if onedal:
            walks["sklearnex_walk"].append(run(f"sklearnex_walk.r{r}", {"method": "sklearnex_walk"}))
        if r + 1 < repeats:
            walks["project_walk"].append(run(f"project_walk.r{r + 1}", {"method": "project_walk"}))
    sel_rows = []
    for m, rs in walks.items():
        ok = [res for res in rs if res]
        if not ok:
            continue
        sel_rows.append({
            "case": name, "width": d, "rows": n, "method": m, "tol": grid_tol if m == "sklearn_grid" else probe["tol"],
            "repeats": len(ok), "C": ok[0]["info"]["C"], "C_limit": ok[0]["info"].get("C_limit", ""),
            "fits": ok[0]["info"]["fits"], "cpu_s": median([res["cpu_s"] for res in ok]),
            "wall_s": median([res["wall_s"] for res in ok]), "val_error": ok[0]["val_error"],
            "test_error": ok[0]["test_error"], "peak_rss_mb": median([res["peak_rss_mb"] for res in ok]),
        })  # fmt: skip
    return fit_rows, sel_rows, ref_rows


def describe(method: str, spec: dict, res: dict) -> str:
    if method == "project":
        return "LinearProbe, Cs=[C], experiment's settings"
    if method.startswith("sklearn"):
        lib = "sklearnex " if method.startswith("sklearnex") else ""
        return f"{lib}lbfgs tol={spec['tol']:g} max_iter={spec['max_iter']}"
    if method == "cyanure":
        return f"auto solver, tol={spec['tol']:g} (duality gap), max_iter={spec['max_iter']}, n_threads=1"
    if method == "rmsprop":
        return "raw features, batch 32, early stopping (scored at the chosen C)"
    return ""


# ---------------------------------------------------------------- outputs


def stamp(argv: list[str]) -> str:
    import importlib.metadata as md

    from threadpoolctl import threadpool_info

    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                                check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
        commit += " (with uncommitted changes)" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    versions = []
    for pkg in ("numpy", "scipy", "scikit-learn", "torch", "cyanure", "scikit-learn-intelex", "threadpoolctl"):
        try:
            versions.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            versions.append(f"{pkg} absent")
    blas = ", ".join(f"{i['internal_api']} {i['version']} ({i.get('architecture', '?')})" for i in threadpool_info())
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"commit {commit}; {os.cpu_count()}-core {platform.machine()} ({cpu}), {mem:.0f} GiB, "
            f"{platform.system()} {platform.release()}; Python {platform.python_version()}, {', '.join(versions)}; "
            f"BLAS {blas}; every fit one thread; command: {' '.join(argv)}")  # fmt: skip


def fmt(v, key: str = "") -> str:
    if v is None or v == "":
        return "-"
    if key in ("val_error", "test_error"):
        return f"{100 * v:.2f}%"
    if key in ("gap", "min_gap", "grad_max", "grad_norm", "tol"):
        return f"{v:.1e}"
    if key == "objective":
        return f"{v:.8f}"
    if key.startswith("ratio"):
        return f"{v:.2f}"
    if key in ("cpu_s", "wall_s", "cpu_to_gap_1e-4_s"):
        return f"{v:.2f}" if v < 10 else f"{v:.1f}"
    if key in ("peak_rss_mb",):
        return f"{v:.0f}"
    if key == "load_avg":
        return f"{v:.1f}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def md_table(rows: list[dict], columns) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(fmt(r.get(c), c) for c in columns) + " |" for r in rows]


def write_outputs(fit_rows, sel_rows, ref_rows, out: Path, header: str) -> None:
    for fname, rows, cols in (("table.csv", fit_rows, COLUMNS), ("selection.csv", sel_rows, SELECTION_COLUMNS),
                              ("reference.csv", ref_rows, REFERENCE_COLUMNS)):  # fmt: skip
        with open(out / fname, "w", newline="") as f:
            f.write(f"# {header}\n")
            w = csv.DictWriter(f, cols, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    short = [c for c in COLUMNS if c not in ("width", "rows", "settings", "load_avg")]
    text = [f"<!-- {header} -->", "", "### CPU seconds to a gap of 1e-4 (in brackets: the gap at its own stop)", ""]
    text += pivot(fit_rows)
    text += ["", "### Single-C fits (medians over repeats; gap relative to the reference)", ""]
    text += md_table(fit_rows, short)
    text += ["", "### Settings per method", ""]
    seen = {}
    for r in fit_rows:
        seen.setdefault((r["case"], r["C"], r["method"]), r.get("settings", ""))
    text += ["| case | C | method | settings |", "|---|---|---|---|"]
    text += [f"| {c} | {fmt(C)} | {m} | {s} |" for (c, C, m), s in seen.items()]
    text += ["", "### The whole C selection", ""] + md_table(sel_rows, SELECTION_COLUMNS)
    text += ["", "### Reference optima (float64 scikit-learn lbfgs, tol 1e-10)", ""]
    text += md_table(ref_rows, REFERENCE_COLUMNS)
    (out / "table.md").write_text("\n".join(text) + "\n")
    plot(fit_rows, out / "benchmark.png", header)


def pivot(fit_rows) -> list[str]:
    """Per case and C, each method's CPU seconds to a gap of 1e-4 ("never" if its run did not reach it),
    its gap at its own stop, and the fastest method's name ("-": not a method of that case and C, as
    ``sklearnex_tuned`` where the tuned tol is 1e-4 or looser and ``rmsprop`` at C=1)."""
    methods = [m for m in FIT_METHODS if any(r["method"] == m for r in fit_rows)]
    lines = [
        "| case (width, rows) | C | " + " | ".join(methods) + " | fastest |",
        "|---|---|" + "---|" * (len(methods) + 1),
    ]
    for case, C in dict.fromkeys((r["case"], r["C"]) for r in fit_rows):
        by = {r["method"]: r for r in fit_rows if r["case"] == case and r["C"] == C}
        cells, best = [], None
        for m in methods:
            r = by.get(m)
            if r is None or r.get("cpu_s") is None:  # not a method of this case and C, or not run
                cells.append("-" if r is None else "not run")
                continue
            t = r.get("cpu_to_gap_1e-4_s")
            cells.append(f"{'never' if t is None else fmt(t, 'cpu_s')} ({fmt(r.get('gap'), 'gap')})")
            if t is not None and (best is None or t < best[1]):
                best = (m, t)
        first = next(iter(by.values()))
        fastest = best[0] if best else "-"
        if "not run" in cells:  # not every method ran: the fastest of those that did
            fastest += " (of those run)" if best else ""
        lines.append(f"| {case} ({first['width']}, {first['rows']}) | {C:g} | " + " | ".join(cells)
                     + f" | {fastest} |")  # fmt: skip
    return lines


def plot(fit_rows, path: Path, header: str) -> None:
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys((r["case"], r["C"]) for r in fit_rows))
    methods = [m for m in FIT_METHODS if any(r["method"] == m for r in fit_rows)]
    fig, axes = plt.subplots(2, 1, figsize=(max(10, 0.7 * len(groups) + 3), 9), sharex=True)
    width = 0.8 / max(1, len(methods))
    for i, m in enumerate(methods):
        by = {(r["case"], r["C"]): r for r in fit_rows if r["method"] == m}
        pos = np.arange(len(groups)) + (i - (len(methods) - 1) / 2) * width
        to_gap = [by.get(g, {}).get("cpu_to_gap_1e-4_s") for g in groups]
        total = [by.get(g, {}).get("cpu_s") for g in groups]
        color = f"C{i}"
        axes[0].bar(pos, [t if t is not None else np.nan for t in to_gap], width, color=color, label=m)
        missed = [(p, t) for p, t, tg in zip(pos, total, to_gap, strict=True) if tg is None and t is not None]
        if missed:
            axes[0].scatter(*zip(*missed, strict=True), marker="x", color=color, zorder=3)
        gaps = [by.get(g, {}).get("gap") for g in groups]
        axes[1].bar(pos, [max(g, 1e-12) if g is not None else np.nan for g in gaps], width, color=color)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("CPU s to a gap of 1e-4 (x: never; at its total CPU)")
    if methods:
        axes[0].legend(fontsize=8, ncol=4)
    axes[1].set_yscale("log")
    axes[1].axhline(TARGET_GAP, color="k", lw=0.8, ls="--")
    axes[1].set_ylabel("relative gap at the method's own stop")
    axes[1].set_xticks(np.arange(len(groups)), [f"{c}\nC={C:g}" for c, C in groups], rotation=60, ha="right",
                       fontsize=7)  # fmt: skip
    short = header.split("; command:")[0] + "; the command: in table.md"
    fig.suptitle("\n".join(textwrap.wrap(short, 180)), fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "child":
        spec = json.loads(Path(sys.argv[2]).read_text())
        res = child_fit(spec)
        Path(spec["result"]).with_suffix(".json").write_text(json.dumps(res))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", action="append", default=[], help="NAME=FILE:POINT")
    ap.add_argument("--probe-settings", required=True, help="JSON (or a JSON file): case name -> probe settings")
    ap.add_argument("--rows", action="append", default=[], help="NAME=N: the case's first N training rows")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--case-repeats", action="append", default=[], help="NAME=R: repeats for this case")
    ap.add_argument("--methods", nargs="+", default=list(FIT_METHODS), choices=FIT_METHODS)
    ap.add_argument(
        "--max-iter",
        action="append",
        default=[],
        metavar="NAME=TRACE,REFERENCE",
        help="iteration limits of the case's trace run and reference (default 20000,5000)",
    )
    ap.add_argument("--case-methods", action="append", default=[], help="NAME=M1,M2: this case's methods")
    ap.add_argument(
        "--sklearn-from-trace",
        action="append",
        default=[],
        metavar="NAME",
        help="read scikit-learn's lbfgs rows of this case off its trace run (wide layers: saves two fits)",
    )
    ap.add_argument("--out", default="results/probe_benchmark")
    ap.add_argument("--timeout", type=float, default=3600, help="wall seconds a single child may run")
    ap.add_argument("--resume", action="store_true", help="reuse the children's results already in --out/fits")
    ap.add_argument("--reuse-only", action="store_true", help="tabulate the results in --out/fits; run nothing")
    a = ap.parse_args()
    text = a.probe_settings
    settings = json.loads(Path(text).read_text() if not text.lstrip().startswith("{") else text)
    rows = {k: int(v) for k, v in (s.split("=", 1) for s in a.rows)}
    reps = {k: int(v) for k, v in (s.split("=", 1) for s in a.case_repeats)}
    case_methods = {k: tuple(v.split(",")) for k, v in (s.split("=", 1) for s in a.case_methods)}
    limits = {k: tuple(int(i) for i in v.split(",")) for k, v in (s.split("=", 1) for s in a.max_iter)}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    runner = Runner(out, a.timeout, a.resume, a.reuse_only)
    header = stamp(["python", *sys.argv])
    fit_rows, sel_rows, ref_rows = [], [], []
    for spec in a.case:
        name, _, target = spec.partition("=")
        path, _, point = target.rpartition(":")
        if name not in settings:
            ap.error(f"--case {spec}: no probe settings for {name!r} in --probe-settings (it has {sorted(settings)})")
        f, s, r = run_case(name, path, point, settings[name], rows.get(name), reps.get(name, a.repeats), runner,
                           case_methods.get(name, tuple(a.methods)), name in a.sklearn_from_trace,
                           limits.get(name, (20000, 5000))[0], limits.get(name, (20000, 5000))[1])  # fmt: skip
        fit_rows, sel_rows, ref_rows = fit_rows + f, sel_rows + s, ref_rows + r
        write_outputs(fit_rows, sel_rows, ref_rows, out, header)  # after every case: a long run shows progress
    print((out / "table.md").read_text())


if __name__ == "__main__":
    main()
