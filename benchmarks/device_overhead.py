"""What the probe solver's torch path costs on the CPU, against the NumPy path, one thread.

The torch path (``device: cuda``) is for GPUs; on the CPU (``torch:cpu``) it runs the same
formulas through torch instead of NumPy. This measures that overhead only: it says nothing
about a GPU. On a synthetic layer (ReLU of a random map of 64 latent features, full rank;
labels from ten of the latent features), it times, in CPU seconds of this process:

- one objective-and-gradient evaluation on every training row (median of ``--evals``, the two
  paths alternating);
- a whole probe at one C (``LinearProbe(Cs=[C])``: feature statistics, whitening up to
  4,096 columns, L-BFGS to ``--tol``, scoring), alternating the two paths ``--repeats`` times,
  with its count of evaluations: the two paths round differently, so L-BFGS's line searches
  take different paths and the whole probe's time differs by that as much as by the overhead.

    OMP_NUM_THREADS=1 python benchmarks/device_overhead.py --width 3136 --rows 10000 --C 1e-2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import probes.solver
from probes.arrays import namespace
from probes.estimator import LinearProbe
from probes.solver import Rows, _loss_grad, feature_stats


def layer(n: int, width: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    mixing = np.random.default_rng(0).normal(size=(64, width)) / 8
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 64))
    y = np.argmax(latent[:, :classes] * 5 + rng.gumbel(size=(n, classes)), axis=1)
    return np.maximum(latent @ mixing - 0.2, 0).astype(np.float32), y


def cpu_seconds(f) -> tuple[float, object]:
    t0 = time.process_time()
    out = f()
    return time.process_time() - t0, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=3136)
    p.add_argument("--rows", type=int, default=10000, help="training rows (validation: a fifth as many)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--C", type=float, default=1e-2)
    p.add_argument("--tol", type=float, default=1e-5)
    p.add_argument("--evals", type=int, default=15)
    p.add_argument("--repeats", type=int, default=1)
    a = p.parse_args()
    threadpool_limits(1)
    torch.set_num_threads(1)
    x, y = layer(a.rows, a.width, a.classes, 1)
    xv, yv = layer(a.rows // 5, a.width, a.classes, 2)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"commit {commit}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"numpy {np.__version__}, one thread, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{a.rows} x {a.width} training rows, {a.classes} classes, C={a.C:g}, tol={a.tol:g}\n")

    mean, scale, _ = feature_stats(Rows(x), False)
    w = np.random.default_rng(3).normal(size=(a.width, a.classes)) * 1e-2
    b = np.zeros(a.classes)
    rows = {device: Rows(x, xp=namespace(device)) for device in ("cpu", "torch:cpu")}
    times: dict[str, list[float]] = {device: [] for device in rows}
    for i in range(a.evals + 1):  # alternating, so both see the same load; the first pair warms up
        for device, r in rows.items():
            seconds = cpu_seconds(lambda: _loss_grad(r, y, w, b, mean, scale, False))[0]
            times[device] += [seconds] if i else []
    evals = {device: statistics.median(t) for device, t in times.items()}
    calls = {"n": 0}

    def counted(*args, **kw):
        calls["n"] += 1
        return _loss_grad(*args, **kw)

    probes.solver._loss_grad = counted  # fit_logistic's evaluations, counted
    fits: dict[str, list] = {"cpu": [], "torch:cpu": []}
    for _ in range(a.repeats):
        for device in fits:
            probe = LinearProbe(Cs=[a.C], solver="preconditioned_lbfgs", tol=a.tol, max_iter=5000, device=device)
            calls["n"] = 0
            seconds, probe = cpu_seconds(lambda: probe.fit(x, y, xv, yv))
            fits[device].append((seconds, probe, calls["n"]))
    print("| path | one evaluation (CPU s) | whole probe (CPU s) | iterations | evaluations | train loss | val error |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for device, runs in fits.items():
        seconds = statistics.median(r[0] for r in runs)
        _, probe, n_evals = runs[-1]
        print(f"| {'NumPy' if device == 'cpu' else 'torch on the CPU'} | {evals[device]:.3f} | {seconds:.1f} | "
              f"{probe.n_iter_} | {n_evals} | {probe.train_loss_:.6g} | {probe.val_error_:.4f} |")  # fmt: skip
    ratio = statistics.median(r[0] for r in fits["torch:cpu"]) / statistics.median(r[0] for r in fits["cpu"])
    print(f"\ntorch/NumPy: {evals['torch:cpu'] / evals['cpu']:.2f}x an evaluation, {ratio:.2f}x a probe")


if __name__ == "__main__":
    main()
