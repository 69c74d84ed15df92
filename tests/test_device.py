"""The probe solver's torch path (``device``), tested on the CPU through ``device="torch:cpu"``:
the same probes as the NumPy path, with every pass over the activations made on torch tensors."""

import json
import logging
from collections import defaultdict

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import snakemake, tiny_config
from test_solver import correlated, low_rank, objective, reference

import probes.estimator as estimator
import probes.solver as solver
from probes.arrays import NUMPY, DeviceError, Torch, namespace, resolve
from probes.cli import main
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
)

TORCH = "torch:cpu"


def kind(a) -> str:
    """Where the blocks of ``Rows`` (or an array) are: ``numpy``, ``torch resident`` or ``torch streamed``."""
    if isinstance(a, Rows):
        block = next(iter(a))[1]
        if isinstance(block, torch.Tensor):
            return "torch resident" if a.resident is not None else "torch streamed"
        return "numpy"
    return "torch resident" if isinstance(a, torch.Tensor) else "numpy"


@pytest.fixture
def seen(monkeypatch):
    """What the solver's passes over the activations ran on: {function: {kind}}, for the loss and
    gradient, the feature statistics, the loss Hessian, the scoring and the whitening."""
    record = defaultdict(set)

    def spy(module, name, which):
        original = getattr(module, name)

        def wrapper(*args, **kw):
            record[name].add(which(*args))
            return original(*args, **kw)

        monkeypatch.setattr(module, name, wrapper)

    spy(solver, "_loss_grad", lambda rows, *_: kind(rows))
    spy(estimator, "feature_stats", lambda rows, *_: kind(rows))
    spy(estimator, "loss_hessian", lambda x, *_: kind(x))
    spy(estimator, "metrics", lambda coef, intercept, classes, x, *_: kind(x))
    spy(estimator, "fit_logistic", lambda *a: f"{a[6].kind} on {kind(a[6].eig[1]) if a[6].eig else 'host'}")
    return record


def assert_same_probe(a: LinearProbe, b: LinearProbe, x, y, test) -> None:
    """``b`` (torch) is ``a`` (NumPy) within the solver's tolerance: the same C, the objective
    within 1e-6 relative, train, validation and test errors within a row."""
    assert a.device_ == "cpu" and b.device_ == TORCH
    assert (b.C_, b.C_limit_, b.reduced_rank_) == (a.C_, a.C_limit_, a.reduced_rank_)
    assert b.converged_ and a.converged_
    mean, scale, _ = feature_stats(Rows(x), False)
    xs = (x.astype(np.float64) - mean) / scale

    def f(p):
        return objective(p.coef_ * scale, p.intercept_ + p.coef_ @ mean, xs, y, p.C_)

    assert abs(f(b) - f(a)) <= 1e-6 * f(a), (f(a), f(b))
    # the objective is flat along the penalty: at C=10, two fits within 1e-7 of scikit-learn's optimum
    # (the multinomial walk's) differ by 1.5e-4 in their training loss
    assert b.train_loss_ == pytest.approx(a.train_loss_, rel=1e-3)
    assert abs(b.train_error_ - a.train_error_) <= 1.01 / len(y)
    assert abs(b.val_error_ - a.val_error_) <= 1.01 / len(test[1])
    (ea, la), (eb, lb) = a.error_and_loss(*test), b.error_and_loss(*test)
    # held-out losses weigh the directions the training rows barely fix (the objective's flattest)
    assert abs(eb - ea) <= 1.01 / len(test[1]) and lb == pytest.approx(la, rel=1e-3)


def splits(x, y, n_train, n_val):
    return (x[:n_train], y[:n_train]), (x[n_train : n_train + n_val], y[n_train : n_train + n_val]), \
           (x[n_train + n_val :], y[n_train + n_val :])  # fmt: skip


def both(train, val, test, **kw) -> tuple[LinearProbe, LinearProbe]:
    kw = {"solver": "preconditioned_lbfgs", "tol": 1e-7, "gap_tol": None, "max_iter": 5000, **kw}
    cpu = LinearProbe(**kw).fit(*train, *val)
    on_torch = LinearProbe(device=TORCH, **kw).fit(*train, *val)
    assert_same_probe(cpu, on_torch, *train, test)
    return cpu, on_torch


@pytest.mark.parametrize("k", [4, 2], ids=["multinomial", "binary"])
def test_a_walk_on_torch_gives_the_numpy_probe(k, seen):
    # cold fits whitened, warm ones preconditioned by the loss Hessian, the walk scored on validation
    train, val, test = splits(*correlated(4000, d=30, k=k, seed=k), 2400, 800)
    cpu, on_torch = both(train, val, test, Cs=[1e-2, 1e-1, 1.0, 10.0])
    assert len(on_torch.path_) >= 3
    assert seen["_loss_grad"] == seen["feature_stats"] == seen["loss_hessian"] == {"numpy", "torch resident"}
    assert seen["metrics"] == {"numpy", "torch resident", "torch streamed"}  # the test split: streamed, once
    assert seen["fit_logistic"] == {"whitening on numpy", "curvature on host", "whitening on torch resident"}


def test_the_whitened_preconditioner_runs_on_torch(seen):
    train, val, test = splits(*correlated(4000, d=30, k=3, seed=11), 2400, 800)
    both(train, val, test, Cs=[1e-1, 1.0], curvature_max_params=0, whiten="always")
    assert seen["fit_logistic"] == {"whitening on numpy", "whitening on torch resident"}
    assert seen["_loss_grad"] == {"numpy", "torch resident"} and "loss_hessian" not in seen


def test_a_warm_start_preconditioned_by_the_loss_hessian_on_torch(seen):
    # a probe started from the previous checkpoint's (here: another C's) weights, as warm_start does
    train, val, test = splits(*correlated(4000, d=30, k=3, seed=12), 2400, 800)
    previous = LinearProbe(Cs=[1e-1], solver="preconditioned_lbfgs").fit(*train, *val)
    init = {"C": 1.0, "coef": previous.coef_, "intercept": previous.intercept_}
    kw = {"Cs": [1.0], "solver": "preconditioned_lbfgs", "tol": 1e-7, "gap_tol": None, "max_iter": 5000}
    seen.clear()
    cpu = LinearProbe(**kw).fit(*train, *val, init=init)
    on_torch = LinearProbe(device=TORCH, **kw).fit(*train, *val, init=init)
    assert_same_probe(cpu, on_torch, *train, test)
    assert seen["fit_logistic"] == {"curvature on host"}  # no cold fit: the first is the warm one
    assert seen["loss_hessian"] == seen["_loss_grad"] == {"numpy", "torch resident"}
    assert "torch resident" in seen["metrics"]  # validation


@pytest.mark.parametrize("memory_mb", [0.05, None], ids=["streamed", "resident"])
def test_a_matrix_streamed_from_hdf5_to_the_device(memory_mb, tmp_path, seen):
    # over the device's memory budget the blocks are read from HDF5 and copied at every pass; under
    # it, copied there once, block by block from HDF5 (no host copy of the whole matrix)
    train, val, test = splits(*correlated(3200, d=40, k=3, seed=3), 2000, 600)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["x"], f["xv"] = train[0], val[0]
    kw = {"Cs": [1e-2, 1.0], "solver": "preconditioned_lbfgs", "tol": 1e-7, "gap_tol": None, "max_iter": 5000, "select_rows": 700,
          "curvature_rows": 300}  # fmt: skip
    memory = LinearProbe(**kw).fit(*train, *val)
    with h5py.File(tmp_path / "a.h5", "r") as f:
        # blocks of 4 KiB: 25 rows of 40 features, 80 copies a pass over the training rows
        streamed = LinearProbe(device=TORCH, device_memory_mb=memory_mb, **kw).fit(
            Rows(f["x"], 4096), train[1], Rows(f["xv"], 4096), val[1])  # fmt: skip
    assert_same_probe(memory, streamed, *train, test)
    where = "torch streamed" if memory_mb else "torch resident"
    assert where in seen["_loss_grad"] and where in seen["feature_stats"]
    assert "torch resident" in seen["loss_hessian"]  # the Hessian's rows: a few, always on the device


@pytest.mark.parametrize("C", [1e-2, 1.0])
def test_wide_low_rank_rows_are_fitted_on_their_span_on_torch(C, seen):
    train, val, test = (low_rank(n, seed) for n, seed in ((1500, 2), (500, 3), (500, 4)))
    cpu, on_torch = both(train, val, test, Cs=[C], whiten_max_width=100)
    assert on_torch.reduced_rank_ == 16 and on_torch.coef_.shape == (3, 240)
    assert "torch resident" in seen["_loss_grad"] and seen["feature_stats"] == {"numpy", "torch resident"}


def collapsed(n, seed):
    """mlp128_skip step 5,000 layer63: feature spreads of ~1e-10 on means of ~1e-3, a few float32 ulps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.random.default_rng(0).standard_normal((3, 20))
    return (1e-3 + 3e-10 * (centres[y] + 1.5 * rng.standard_normal((n, 20)))).astype(np.float32), y


def test_a_layer_varying_by_float32_ulps_on_a_constant_offset_on_torch(seen):
    train, val, test = collapsed(4000, 1), collapsed(2000, 2), collapsed(2000, 3)
    cpu, on_torch = both(train, val, test, Cs=[0.1], tol=1e-5, max_iter=1000)
    x64 = train[0].astype(np.float64)
    mean, scale = x64.mean(axis=0), x64.std(axis=0)
    xs = (x64 - mean) / scale
    _, best = reference(xs, train[1], 0.1)
    coef, intercept = on_torch.coef_ * scale, on_torch.intercept_ + on_torch.coef_ @ mean
    assert (objective(coef, intercept, xs, train[1], 0.1) - best) / best < 1e-5  # at the optimum, as the CPU's
    assert on_torch.train_error_ < 0.1 and "torch resident" in seen["_loss_grad"]


@pytest.mark.parametrize("k", [2, 4])
def test_the_loss_and_gradient_on_torch_are_the_numpy_ones(k):
    # well-classified rows (losses of 1e-12 .. 1e-7, which only log1p of the other classes' share
    # keeps; test_solver's case): the same loss and gradient to float32 rounding
    rng = np.random.default_rng(5)
    x = rng.normal(size=(900, 6)).astype(np.float32)
    y = rng.integers(0, k, 900)
    m = k if k > 2 else 1
    shift = np.zeros((900, k))
    shift[np.arange(900), y] = rng.uniform(16, 28, 900)
    x = np.hstack([x, shift]).astype(np.float32)
    w = np.vstack([rng.normal(size=(6, m)) * 0.3, np.eye(k)[:, -m:] if k > 2 else [[-1.0], [1.0]]])
    mean, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
    ref = _loss_grad(Rows(x, 1024), y, w, np.zeros(m), mean, scale, k == 2)
    got = _loss_grad(Rows(x, 1024, xp=namespace(TORCH)), y, w, np.zeros(m), mean, scale, k == 2)
    assert all(isinstance(a, np.ndarray) for a in got[1:])  # the gradient comes back to the host
    assert 0 < ref[0] < 1e-6 and got[0] == pytest.approx(ref[0], rel=1e-6)
    for a, b in zip(ref[1:], got[1:]):
        assert np.abs(a - b).max() <= 1e-6 * np.abs(a).max()


def test_the_statistics_hessian_and_whitening_on_torch_are_the_numpy_ones():
    x, y = correlated(1500, d=25, k=3, seed=9)
    xp = namespace(TORCH)
    mean, scale, cov = feature_stats(Rows(x), True)
    t_mean, t_scale, t_cov = feature_stats(Rows(x, xp=xp), True)
    np.testing.assert_allclose(t_mean, mean, rtol=1e-6)
    np.testing.assert_allclose(t_scale, scale, rtol=1e-10)
    np.testing.assert_allclose(t_cov, cov, rtol=0, atol=1e-6)
    w, b = np.random.default_rng(0).normal(size=(25, 3)), np.array([0.1, -0.2, 0.3])
    h = loss_hessian(x[:500], w, b, mean, scale)
    t_h = loss_hessian(xp.asarray(x[:500]), w, b, mean, scale)
    assert isinstance(t_h, np.ndarray) and np.abs(t_h - h).max() <= 1e-5 * np.abs(h).max()
    u = np.random.default_rng(1).normal(size=26 * 3)
    for a, c in zip(Preconditioner(cov=cov).at(1e-3, 25, 3), Preconditioner(cov=cov, xp=xp).at(1e-3, 25, 3)):
        assert isinstance(c(u), np.ndarray)
        np.testing.assert_allclose(c(u), a(u), rtol=1e-8, atol=1e-10 * np.abs(a(u)).max())
    rows, t_rows = Rows(x), Rows(x, xp=xp)
    lam = 1 / len(y)
    fits = [fit_logistic(r, y, 3, lam, mean, scale, Preconditioner(cov=cov, xp=r.xp), tol=1e-7) for r in (rows, t_rows)]
    # the two backends' float32 sums round differently, and the fits stop apart by that noise (2.6e-7
    # on an AMD EPYC with OpenBLAS's Haswell kernels)
    assert fits[1].objective == pytest.approx(fits[0].objective, rel=1e-6)
    w, b = fits[0][:2]
    ref, got = (certified_gap(r, y, w, b, lam, mean, scale, False) for r in (rows, t_rows))
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-6, atol=1e-9)  # the optimal intercepts
    assert got[1] == pytest.approx(ref[1], rel=1e-7) and got[2] == pytest.approx(ref[2], rel=1e-6)


def test_fit_points_on_torch_reads_the_hdf5_matrix_to_the_device_and_scores_there(tmp_path, seen):
    x, y = correlated(1500, d=64, k=3, seed=5)
    path = tmp_path / "act.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update(complete=True, experiment="e", step=0)
        for split, sl in (("train", slice(0, 1000)), ("val", slice(1000, 1250)), ("test", slice(1250, 1500))):
            f[f"{split}/labels"], f[f"{split}/layer"] = y[sl], x[sl]
    probe = {"Cs": [0.1, 1.0], "solver": "preconditioned_lbfgs", "tol": 1e-7, "gap_tol": None, "max_iter": 5000, "standardize": True,
             "patience": 1, "random_state": 0, "select_rows": 0, "memory_budget_mb": 0.1}  # fmt: skip
    spec = {"point": "layer", "layer_index": 1, "probe": probe}
    results = {}
    for device in ("cpu", TORCH):
        out = tmp_path / device.replace(":", "_")
        fit_points({"experiment": "e", "repeat": 0, "step": 0, "points": [spec]}, path, out.with_suffix(".json"),
                   out.with_suffix(".npz"), device=device)  # fmt: skip
        results[device] = json.loads(out.with_suffix(".json").read_text())[0]
    cpu, on_torch = results["cpu"], results[TORCH]
    assert cpu["out_of_core"] and on_torch["out_of_core"]  # over memory_budget_mb: not read into host memory
    assert set(cpu) == set(on_torch)  # the same record: the device is how the probe ran, not what it is
    assert on_torch["C"] == cpu["C"] and on_torch["status"] == cpu["status"] == "ok"
    for split in ("train", "val", "test"):
        assert abs(on_torch[f"{split}_error"] - cpu[f"{split}_error"]) <= 1.01 / 250
        assert on_torch[f"{split}_loss"] == pytest.approx(cpu[f"{split}_loss"], rel=1e-3)
    assert "torch resident" in seen["_loss_grad"] and "torch streamed" in seen["metrics"]


def test_the_device_setting_resolves_or_says_what_is_wrong():
    assert resolve("cpu") == "cpu" and namespace("cpu") is NUMPY
    assert resolve(TORCH) == TORCH and isinstance(namespace(TORCH), Torch)
    with pytest.raises(DeviceError, match="expected auto, cpu or cuda"):
        resolve("gpu")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: auto is cuda")
    assert resolve("auto") == "cpu" and namespace("auto") is NUMPY
    with pytest.raises(DeviceError, match=r"device: cuda: no CUDA device is available here .*auto or cpu"):
        resolve("cuda")
    x, y = correlated(300, d=5, k=3, seed=1)
    with pytest.raises(DeviceError, match="device: cuda"):
        LinearProbe(Cs=[1.0], solver="preconditioned_lbfgs", device="cuda").fit(x, y, x, y)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_probes_fit_on_cuda_without_one_is_a_one_line_error(tmp_path, caplog, capsys):
    caplog.set_level(logging.INFO)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--settings", "{}", "--activations", str(tmp_path / "none.h5"), "--out-json",
              str(tmp_path / "p.json"), "--out-weights", str(tmp_path / "p.npz"), "--device", "cuda"])  # fmt: skip
    assert exit_.value.code == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None  # no traceback
    assert errors[0].getMessage().startswith("device: cuda: no CUDA device is available here")
    assert not (tmp_path / "p.json").exists()


def test_the_configs_device_reaches_every_train_extract_and_probe_job(tmp_path):
    # a resource, not a param: test_staleness checks that changing it reruns nothing
    config = tiny_config()
    config["device"] = "cuda"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(tmp_path, "--dry-run", "--printshellcmds")
    assert run.returncode == 0, run.stderr[-3000:]
    for stage in ("train", "extract", "fit"):
        commands = [line for line in run.stdout.splitlines() if f"probes {stage} " in line]
        assert commands and all("--device cuda" in line for line in commands), stage
