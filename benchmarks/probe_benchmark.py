"""Benchmark probe fitting on real activations: this project's probes against what a researcher would write.

Usage: ``snakemake --cores 2 probe_benchmark`` runs it on the paper's layers
(workflow/rules/benchmark.smk), with the experiments' probe settings; by hand:

    python benchmarks/probe_benchmark.py --probe-settings '{"init/fc1": {...}}' \\
        --case init/fc1=results/mnist_convnet/r0/activations/step0.h5:fc1_postact ... \\
        --out results/probe_benchmark [--timeout 1800] [--out-of-core init/fc1]

Per case (an activation file and probe point) and method, each fit runs in its
own single-threaded process (as a workflow probe job does), stopped after
``--timeout`` seconds and then reported as a lower bound. Methods:

1. ``sklearn_defaults``: ``LogisticRegression()`` as a user would write it:
   unscaled features, scikit-learn's defaults, a cold fit per C of the grid.
2. ``rmsprop_early_stopping``: the seeds' way, a linear layer trained by
   minibatch RMSProp (lr 5e-4, decay 0.9, momentum 0.9, centred, batch 32) with
   early stopping on validation error (patience 3 epochs, at most 10 as the seeds).
3. ``project``: ``LinearProbe`` with the experiment's probe settings from the
   config; ``project_out_of_core`` the same, streaming from HDF5 (memory budget 1 MB).

Each solution is scored by the project's objective (scikit-learn's, on
standardised features) at the C it chose; for RMSProp, which has no C, at the
C the project chose. The relative gap is to the best objective any method,
or a tight-tolerance polish of the best one, reached at that C. Writes
``table.csv``, ``table.md`` and ``benchmark.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

METHODS = ("sklearn_defaults", "rmsprop_early_stopping", "project")
COLUMNS = ("case", "width", "method", "seconds", "timed_out", "iterations", "C", "objective", "gap",
           "val_error", "test_error", "peak_rss_mb")  # fmt: skip


def load(path: str, split: str, point: str) -> tuple[np.ndarray, np.ndarray]:
    from probes.activations import read_point

    return read_point(Path(path), split, point)


def fit_sklearn_defaults(path: str, point: str, probe: dict) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from probes.estimator import metrics

    x, y = load(path, "train", point)
    xv, yv = load(path, "val", point)
    best, iterations = None, 0
    for C in probe["Cs"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = LogisticRegression(C=C).fit(x, y)
        iterations += int(np.max(clf.n_iter_))
        err = metrics(clf.coef_, clf.intercept_, clf.classes_, xv, yv)[0]
        if best is None or err < best[0]:
            best = (err, C, clf.coef_.astype(np.float32), clf.intercept_.astype(np.float32))
    return {"C": best[1], "coef": best[2], "intercept": best[3], "iterations": iterations}


def fit_rmsprop(path: str, point: str, probe: dict, max_epochs: int = 10, patience: int = 3) -> dict:
    import torch

    x, y = load(path, "train", point)
    xv, yv = load(path, "val", point)
    torch.manual_seed(probe["random_state"])
    xt, yt, xvt = torch.from_numpy(x), torch.from_numpy(y).long(), torch.from_numpy(xv)
    k = int(y.max()) + 1
    layer = torch.nn.Linear(x.shape[1], k)
    opt = torch.optim.RMSprop(layer.parameters(), lr=5e-4, alpha=0.9, eps=1e-6, momentum=0.9, centered=True)
    best, since, steps = (2.0, None), 0, 0
    for _ in range(max_epochs):
        for idx in torch.randperm(len(xt)).split(32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(layer(xt[idx]), yt[idx]).backward()
            opt.step()
            steps += 1
        with torch.no_grad():
            err = float((layer(xvt).argmax(1).numpy() != yv).mean())
        if err < best[0]:
            best, since = (err, {k_: v.detach().clone() for k_, v in layer.state_dict().items()}), 0
        else:
            since += 1
            if since >= patience:
                break
    return {"C": None, "coef": best[1]["weight"].numpy(), "intercept": best[1]["bias"].numpy(), "iterations": steps}


def fit_project(path: str, point: str, probe: dict, out_of_core: bool = False) -> dict:
    import h5py

    from probes.estimator import LinearProbe
    from probes.solver import Rows

    params = {k: v for k, v in probe.items() if k not in ("points_per_job", "overrides", "memory_budget_mb")}
    if out_of_core:
        with h5py.File(path, "r", locking=False) as f:
            y, yv = f["train/labels"][:], f["val/labels"][:]
            p = LinearProbe(**params).fit(Rows(f[f"train/{point}"]), y, Rows(f[f"val/{point}"]), yv)
    else:
        x, y = load(path, "train", point)
        xv, yv = load(path, "val", point)
        p = LinearProbe(**params).fit(x, y, xv, yv)
    return {"C": p.C_, "coef": p.coef_, "intercept": p.intercept_, "iterations": sum(r["n_iter"] for r in p.path_)}


def child(a: argparse.Namespace) -> None:
    """Fit one (case, method) in this process; write its solution and measurements."""
    probe = json.loads(a.probe)
    t0 = time.time()
    if a.method == "sklearn_defaults":
        res = fit_sklearn_defaults(a.file, a.point, probe)
    elif a.method == "rmsprop_early_stopping":
        res = fit_rmsprop(a.file, a.point, probe)
    else:
        res = fit_project(a.file, a.point, probe, out_of_core=a.method == "project_out_of_core")
    seconds = time.time() - t0
    # VmHWM, not getrusage: Linux carries ru_maxrss across fork and exec, so a child of a parent
    # holding a large matrix would report the parent's memory as its own
    peak = peak_rss_mb(os.getpid())
    np.savez(a.result, coef=res["coef"], intercept=res["intercept"])
    Path(a.result).with_suffix(".json").write_text(json.dumps(
        {"seconds": seconds, "iterations": res["iterations"], "C": res["C"], "peak_rss_mb": peak}))  # fmt: skip


def objective(x, y, coef, intercept, mean, scale, C) -> float:
    """The project's objective of a raw-feature model: mean loss + ||coef * scale||^2 / (2 C n)."""
    from probes.estimator import metrics

    loss = metrics(coef, intercept, np.arange(coef.shape[0] if coef.shape[0] > 1 else 2), x, y)[1]
    return loss + float(np.sum((coef.astype(np.float64) * scale) ** 2)) / (2 * C * len(y))


def polish(x, y, start, mean, scale, cov, C, k) -> tuple[np.ndarray, np.ndarray]:
    """A tight-tolerance refit from ``start`` (raw weights), to bound how far the best method is.

    Wider than 4,096 columns (no covariance to whiten with), on the rows' span when
    that has at most 4,096 dimensions (lossless, as the project's probes do).
    """
    from probes.estimator import unstandardise
    from probes.solver import Preconditioner, Rows, feature_stats, fit_logistic, row_space

    w0 = (start[0] * scale).T
    b0 = start[1] + start[0] @ mean
    found = row_space(Rows(x), mean, scale, 4096) if cov is None else None
    if found is None:
        w, b, *_ = fit_logistic(Rows(x), y, k, 1 / (C * len(y)), mean, scale, Preconditioner(cov=cov), (w0, b0),
                                tol=1e-8, max_iter=300)  # fmt: skip
        return unstandardise(w.T, b, mean, scale)
    z, basis = found
    z_cov = feature_stats(Rows(z), True, standardised=False)[2]
    r = basis.shape[1]
    w, b, *_ = fit_logistic(Rows(z), y, k, 1 / (C * len(y)), np.zeros(r), np.ones(r),
                            Preconditioner(cov=z_cov), (basis.T @ w0, b0),
                            tol=1e-8, max_iter=300)  # fmt: skip
    return unstandardise((basis @ w).T, b, mean, scale)


def peak_rss_mb(pid: int) -> float | None:
    """A running process's peak resident memory (VmHWM), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_case(
    name: str, path: str, point: str, probe: dict, methods: list[str], out: Path, timeout: float,
    reuse: tuple[str, ...] = (),
) -> list[dict]:  # fmt: skip
    from probes.estimator import metrics
    from probes.solver import Rows, feature_stats

    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for method in methods:
        result = out / "fits" / f"{name.replace('/', '_')}.{method}.npz"
        result.parent.mkdir(parents=True, exist_ok=True)
        if method in reuse and result.exists() and result.with_suffix(".json").exists():
            info = json.loads(result.with_suffix(".json").read_text())
            rows.append({"case": name, "method": method, "timed_out": False, **info, "result": result})
            print(f"{name} {method}: reused {result} ({info['seconds']:.1f} s)", flush=True)
            continue
        cmd = [sys.executable, __file__, "child", "--method", method, "--file", path, "--point", point,
               "--probe", json.dumps(probe), "--result", str(result)]  # fmt: skip
        t0 = time.time()
        proc = subprocess.Popen(cmd, env=env)
        try:
            if proc.wait(timeout=timeout):
                raise subprocess.CalledProcessError(proc.returncode, cmd)
            info = json.loads(result.with_suffix(".json").read_text())
            rows.append({"case": name, "method": method, "timed_out": False, **info, "result": result})
        except subprocess.TimeoutExpired:
            peak = peak_rss_mb(proc.pid)  # read before the kill: the high-water mark so far
            proc.kill()
            proc.wait()
            rows.append({"case": name, "method": method, "timed_out": True, "seconds": time.time() - t0,
                         "iterations": None, "C": None, "peak_rss_mb": peak, "result": None})  # fmt: skip
        print(f"{name} {method}: {rows[-1]['seconds']:.1f} s{' (timed out)' if rows[-1]['timed_out'] else ''}",
              flush=True)  # fmt: skip
    x, y = load(path, "train", point)
    xv, yv = load(path, "val", point)
    xt, yt = load(path, "test", point)
    mean, scale, cov = feature_stats(Rows(x), x.shape[1] <= 4096)  # cov: the polish's whitening
    classes = np.unique(y)
    solutions = {r["method"]: tuple(np.load(r["result"]).values()) for r in rows if r["result"]}
    project_c = next((r["C"] for r in rows if r["method"] == "project" and r["C"]), max(probe["Cs"]))
    for r in rows:
        r["width"] = x.shape[1]
        if r["method"] == "rmsprop_early_stopping":
            r["C_scored"] = project_c
        else:
            r["C_scored"] = r["C"]
        if r["result"]:
            coef, intercept = solutions[r["method"]]
            r["objective"] = objective(x, y, coef, intercept, mean, scale, r["C_scored"])
            r["val_error"] = metrics(coef, intercept, classes, xv, yv)[0]
            r["test_error"] = metrics(coef, intercept, classes, xt, yt)[0]
    for C in {r["C_scored"] for r in rows if r.get("objective") is not None}:
        at_c = [r for r in rows if r.get("objective") is not None and r["C_scored"] == C]
        best = min(at_c, key=lambda r: r["objective"])
        k = 1 if len(classes) == 2 else len(classes)
        polished = polish(x, y, solutions[best["method"]], mean, scale, cov, C, k)
        floor = min(best["objective"], objective(x, y, *polished, mean, scale, C))
        for r in at_c:
            r["gap"] = (r["objective"] - floor) / abs(floor)
    return rows


def write_outputs(rows: list[dict], out: Path) -> None:
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)

    def fmt(r, key):
        v = r.get(key)
        if key == "seconds":
            return f">{v:.0f}" if r["timed_out"] else f"{v:.1f}"
        if v is None:
            return "-"
        if key in ("val_error", "test_error"):
            return f"{100 * v:.2f}%"
        if key == "gap":
            return f"{v:.1e}"
        if key == "objective":
            return f"{v:.5f}"
        if key == "peak_rss_mb":
            return f"{v:.0f}"
        return f"{v:g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(r, c) for c in COLUMNS) + " |" for r in rows]
    (out / "table.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys(r["case"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        by_case = {r["case"]: r for r in rows if r["method"] == m}
        pos = np.arange(len(cases)) + i * width
        secs = [by_case[c]["seconds"] if c in by_case else np.nan for c in cases]
        errs = [100 * by_case[c]["test_error"] if by_case.get(c, {}).get("test_error") is not None else np.nan
                for c in cases]  # fmt: skip
        bars = axes[0].bar(pos, secs, width, label=m)
        for bar, c in zip(bars, cases, strict=True):
            if c in by_case and by_case[c]["timed_out"]:
                bar.set_hatch("//")
        axes[1].bar(pos, errs, width, label=m)
    for ax, label in zip(axes, ("wall time of the validation-selected fit (s, log; hatched: stopped)",
                                "test error (%)"), strict=True):  # fmt: skip
        ax.set_xticks(np.arange(len(cases)) + 0.4 - width / 2, cases, rotation=30, ha="right", fontsize=8)
        ax.set_title(label, fontsize=9)
    axes[0].set_yscale("log")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "benchmark.png", dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    c = sub.add_parser("child")
    for opt in ("--method", "--file", "--point", "--probe", "--result"):
        c.add_argument(opt, required=True)
    ap.add_argument("--case", action="append", default=[], help="NAME=FILE:POINT")
    ap.add_argument("--probe-settings", help="JSON: case name -> the probe settings of its experiment")
    ap.add_argument("--out", default="results/probe_benchmark")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--out-of-core", action="append", default=[], help="case names also fitted out of core")
    ap.add_argument("--reuse", nargs="+", default=[], help="methods whose fits already in --out/fits are reused "
                    "(after an interrupted run; the caller vouches they were made with the same settings)")  # fmt: skip
    a = ap.parse_args()
    if a.cmd == "child":
        return child(a)
    settings = json.loads(a.probe_settings or "{}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for spec in a.case:
        name, _, target = spec.partition("=")
        path, _, point = target.rpartition(":")
        if name not in settings:
            ap.error(f"--case {spec}: no probe settings for {name!r} in --probe-settings (it has {sorted(settings)})")
        methods = a.methods + (["project_out_of_core"] if name in a.out_of_core else [])
        rows += run_case(name, path, point, settings[name], methods, out, a.timeout, tuple(a.reuse))
        write_outputs(rows, out)  # after every case, so a long run shows progress
    print((out / "table.md").read_text())


if __name__ == "__main__":
    main()
