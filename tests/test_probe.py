import json
import sys

import numpy as np
import pytest
from conftest import activation_file
from sklearn.linear_model import LogisticRegression

from probes.aggregate import aggregate
from probes.estimator import LinearProbe
from probes.plots import animate_error_by_point, plot_error_by_point
from probes.probe import fit_points
from probes.solver import Rows, feature_stats


def separable(n, d=20, k=3, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, k))
    x = (rng.normal(size=(n, d)) * rng.uniform(0.1, 10, size=d) + rng.normal(size=d) * 5).astype(np.float32)
    return x, np.argmax(x @ w, axis=1)


def test_linearly_separable_data_gives_near_zero_error():
    x, y = separable(4000)
    xv, yv = x[3000:], y[3000:]
    probe = LinearProbe(Cs=[1.0, 100.0], max_iter=1000).fit(x[:2000], y[:2000], x[2000:3000], y[2000:3000])
    assert probe.train_error_ < 0.01 and probe.val_error_ < 0.03
    assert 1 - probe.score(xv, yv) < 0.04


def test_random_labels_give_chance_error():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 30)).astype(np.float32)
    y = rng.integers(0, 10, size=4000)
    probe = LinearProbe(Cs=[1e-2, 1.0]).fit(x[:3000], y[:3000], x[3000:], y[3000:])
    assert abs(probe.val_error_ - 0.9) < 0.04


def test_c_is_chosen_by_validation_error_over_the_grid():
    x, y = separable(600, d=50, seed=2)
    flip = np.random.default_rng(3).random(600) < 0.2
    y = np.where(flip, (y + 1) % 3, y)  # label noise so that C matters
    xt, yt, xv, yv = x[:300], y[:300], x[300:], y[300:]
    grid = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
    probe = LinearProbe(Cs=grid, patience=None, tol=1e-8, max_iter=5000).fit(xt, yt, xv, yv)
    path = sorted(probe.path_, key=lambda r: r["C"])
    assert [r["C"] for r in path] == grid
    errors = [r["val_error"] for r in path]
    assert probe.val_error_ == min(errors)
    best = [r for r in path if r["val_error"] == min(errors)]
    assert probe.C_ == min(best, key=lambda r: (r["val_loss"], r["C"]))["C"]  # ties: lower val loss
    # each recorded validation error is that of an independent, cold, standardised scikit-learn fit
    mean, scale, _ = feature_stats(Rows(xt), False)
    for r in probe.path_:
        ref = LogisticRegression(C=r["C"], tol=1e-8, max_iter=5000).fit((xt - mean) / scale, yt)
        assert r["val_error"] == pytest.approx(1 - ref.score((xv - mean) / scale, yv), abs=2 / len(yv))
    # raw-feature weights give the standardised model's predictions
    ref = LogisticRegression(C=probe.C_, tol=1e-8, max_iter=5000).fit((xt - mean) / scale, yt)
    assert np.mean(probe.predict(xv) == ref.predict((xv - mean) / scale)) > 0.99


def test_the_sklearnex_solver_walks_the_grid_to_scikit_learns_optima():
    """solver: sklearnex (oneDAL's lbfgs): every C's fit on scikit-learn's objective, the same C chosen."""
    pytest.importorskip("sklearnex")
    x, y = separable(900, d=40, seed=6)
    xt, yt, xv, yv = x[:600], y[:600], x[600:], y[600:]
    grid = [1e-2, 1e-1, 1.0, 10.0]
    probes = {s: LinearProbe(Cs=grid, solver=s, tol=1e-8, max_iter=5000, patience=None).fit(xt, yt, xv, yv)
              for s in ("lbfgs", "sklearnex")}  # fmt: skip
    ours, ref = probes["sklearnex"], probes["lbfgs"]
    assert ours.C_ == ref.C_ and ours.converged_
    assert ours.train_loss_ == pytest.approx(ref.train_loss_, rel=1e-3)
    assert np.mean(ours.predict(xv) == ref.predict(xv)) > 0.99
    short = LinearProbe(Cs=[1.0], solver="sklearnex", tol=1e-10, max_iter=2).fit(xt, yt, xv, yv)
    assert short.converged_ is False  # its iteration limit is reported, as scikit-learn's


def test_the_sklearnex_solver_without_scikit_learn_intelex_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearnex.linear_model", None)  # import fails
    x, y = separable(200)
    with pytest.raises(ImportError, match=r"scikit-learn-intelex.*probes\[fast\]"):
        LinearProbe(Cs=[1.0], solver="sklearnex").fit(x[:100], y[:100], x[100:], y[100:])


def test_walk_starts_in_the_middle_and_patience_stops_each_direction():
    x, y = separable(800, seed=4)
    noisy = np.where(np.random.default_rng(5).random(800) < 0.3, 0, y)
    xt, xv = x[:400].copy(), x[400:].copy()
    grid = [1e-4, 1e-3, 1e-2, 1e-1, 1, 10, 100]
    full = LinearProbe(Cs=grid, solver="lbfgs", patience=None).fit(xt, noisy[:400], xv, noisy[400:])
    assert [r["C"] for r in full.path_] == [1e-1, 1, 10, 100, 1e-2, 1e-3, 1e-4]
    probe = LinearProbe(Cs=grid, solver="lbfgs", patience=1).fit(xt, noisy[:400], xv, noisy[400:], copy=False)
    tried = [r["C"] for r in probe.path_]
    assert tried[0] == 1e-1 and probe.C_ in tried
    up, down = [c for c in tried if c >= 1e-1], [c for c in tried if c < 1e-1]
    assert up == sorted(up) and down == sorted(down, reverse=True)
    val = {r["C"]: r["val_error"] for r in probe.path_}
    # each direction went on while validation error improved and stopped one C after
    for walk in (up, [1e-1] + down):
        for i in range(1, len(walk) - 1):
            assert val[walk[i]] < min(val[c] for c in walk[:i]) or walk[i] == probe.C_
    assert np.allclose(xt.mean(axis=0), 0, atol=1e-4) and not np.allclose(x[:400].mean(axis=0), 0, atol=1e-4)


def test_constant_columns_do_not_break_standardisation():
    x, y = separable(500)
    x = np.hstack([x, np.full((500, 3), 7.0, np.float32)])
    probe = LinearProbe(Cs=[1.0]).fit(x[:400], y[:400], x[400:], y[400:])
    assert np.isfinite(probe.coef_).all() and probe.val_error_ < 0.1


def test_tiny_activations_are_standardised_not_treated_as_constant():
    """A 128-layer net shrinks activations by ~1e-13; they stay informative and must be used."""
    x, y = separable(500)
    tiny = x * np.float32(1e-15)
    _, scale, _ = feature_stats(Rows(tiny), False)
    assert np.allclose(scale, feature_stats(Rows(x), False)[1] * 1e-15, rtol=1e-3)
    probe = LinearProbe(Cs=[1.0]).fit(tiny[:400], y[:400], tiny[400:], y[400:])
    assert probe.val_error_ == LinearProbe(Cs=[1.0]).fit(x[:400], y[:400], x[400:], y[400:]).val_error_ < 0.1


def test_fit_points_reports_non_convergence_and_writes_every_point(tmp_path, caplog):
    x, y = separable(900, d=40, seed=6)
    path = activation_file(tmp_path / "act.h5", {"layer": x, "half": x[:, :20]}, y, step=5)
    probe = {"Cs": [1.0], "solver": "lbfgs", "tol": 1e-10, "max_iter": 2, "standardize": True,
             "patience": 1, "random_state": 0}  # fmt: skip
    settings = {"experiment": "e", "repeat": 0, "step": 5,
                "points": [{"point": "layer", "layer_index": 3, "probe": probe},
                           {"point": "half", "layer_index": 4, "probe": {**probe, "max_iter": 1000}}]}  # fmt: skip
    results = fit_points(settings, path, tmp_path / "p.json", tmp_path / "p.npz")
    assert results[0]["converged"] is False and "did not converge" in results[0]["warnings"][0]
    assert "did not converge" in caplog.text
    assert results[1]["converged"] is True and results[1]["warnings"] == []
    on_disk = json.loads((tmp_path / "p.json").read_text())
    assert [(r["point"], r["width"], r["layer_index"]) for r in on_disk] == [("layer", 40, 3), ("half", 20, 4)]
    assert on_disk[0]["converged"] is False
    weights = np.load(tmp_path / "p.npz")
    assert weights["layer.coef"].shape == (3, 40) and weights["half.coef"].shape == (3, 20)
    assert list(weights["layer.classes"]) == [0, 1, 2]
    settings["points"][0]["probe"]["max_iter"] = 1000
    results = fit_points(settings, path, tmp_path / "p.json", tmp_path / "p.npz")
    assert results[0]["converged"] is True and results[0]["warnings"] == [] and results[0]["test_error"] < 0.1


@pytest.mark.parametrize("solver", ["lbfgs", "preconditioned_lbfgs"])
def test_nan_inf_or_constant_activations_give_chance_level_with_a_warning_and_still_plot(tmp_path, caplog, solver):
    x, y = separable(900, d=12, seed=3)
    exploded = x.copy()
    exploded[7, 2], exploded[650, 0] = np.nan, np.inf  # one NaN in train, one inf in val
    inf_in_test = x.copy()
    inf_in_test[800, 5] = -np.inf
    points = {"good": x, "exploded": exploded, "inf_test": inf_in_test, "constant": np.full_like(x, 3.0)}
    path = activation_file(tmp_path / "act.h5", points, y)
    probe = {"Cs": [0.1, 1.0], "solver": solver, "tol": 1e-6, "max_iter": 500, "standardize": True,
             "patience": 1, "random_state": 0}  # fmt: skip
    names = ["good", "exploded", "inf_test", "constant"]
    settings = {"experiment": "e", "repeat": 0, "step": 0,
                "points": [{"point": p, "layer_index": i, "probe": probe} for i, p in enumerate(names)]}  # fmt: skip
    results = {r["point"]: r for r in fit_points(settings, path, tmp_path / "p.json", tmp_path / "p.npz")}
    assert results["good"]["test_error"] < 0.1 and results["good"]["warnings"] == []
    majority = np.bincount(y[:500]).argmax()  # the class-prior classifier always predicts it
    for name, split_counts in (("exploded", "1 in train, 1 in val"), ("inf_test", "1 in test")):
        r = results[name]
        assert np.isnan(r["C"]) and r["n_iter"] == 0
        assert r["converged"] is False and r["status"] == "nonfinite"  # no fit: not a converged probe
        assert f"NaN or infinite values ({split_counts})" in r["warnings"][0] and "chance level" in r["warnings"][0]
        for split, sl in (("train", slice(0, 500)), ("val", slice(500, 700)), ("test", slice(700, 900))):
            assert r[f"{split}_error"] == pytest.approx(np.mean(y[sl] != majority)), (name, split)
            assert np.isfinite(r[f"{split}_loss"])
    assert results["constant"]["warnings"] == [
        "activations are constant over the training rows: the probe can only predict class frequencies (chance level)"
    ]
    assert results["constant"]["test_error"] == pytest.approx(np.mean(y[700:] != majority))
    assert results["constant"]["status"] == "constant" and results["good"]["status"] == "ok"
    assert "NaN or infinite" in caplog.text and "constant over the training rows" in caplog.text
    assert json.loads((tmp_path / "p.json").read_text().replace("NaN", "null"))[1]["C"] is None
    # the aggregate and the figure take them: NaN C and norms, a model whose loss is NaN
    (tmp_path / "m.json").write_text(json.dumps({"experiment": "e", "repeat": 0, "step": 0, "epoch": 0,
                                                 **{f"{s}_{m}": float("nan") for s in ("train", "val", "test")
                                                    for m in ("loss", "acc")}}))  # fmt: skip
    aggregate([tmp_path / "p.json"], [tmp_path / "m.json"], tmp_path / "probes.csv", tmp_path / "model.csv")
    for metric in ("train_error", "activation_norm"):
        plot_error_by_point(tmp_path / "probes.csv", [0], ["e"], metric, [tmp_path / f"{metric}.png"])
        assert (tmp_path / f"{metric}.png").stat().st_size > 1000
    animate_error_by_point(tmp_path / "probes.csv", tmp_path / "model.csv", "test_error", [tmp_path / "a.gif"])
    assert (tmp_path / "a.gif").stat().st_size > 1000


def standardised_objective(probe: LinearProbe, x: np.ndarray, y: np.ndarray) -> float:
    """The probe's objective at its C (mean cross-entropy + ||W||^2 / (2 C n), W on standardised
    features), in float64."""
    _, scale, _ = feature_stats(Rows(x), False)
    z = x.astype(np.float64) @ probe.coef_.T + probe.intercept_
    z = np.hstack([np.zeros_like(z), z]) if z.shape[1] == 1 else z
    z -= z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -logp[np.arange(len(y)), np.searchsorted(probe.classes_, y)].mean()
    return loss + np.sum((probe.coef_ * scale) ** 2) / (2 * probe.C_ * len(y))


@pytest.mark.parametrize("solver", ["preconditioned_lbfgs", "lbfgs"])
def test_a_warm_start_from_the_previous_checkpoints_probe_reaches_the_same_optimum_in_fewer_iterations(solver):
    x, y = separable(3000, d=30, seed=8)
    y = np.where(np.random.default_rng(9).random(3000) < 0.1, (y + 1) % 3, y)  # noise: C matters
    before = x + np.random.default_rng(10).normal(scale=0.05 * x.std(axis=0), size=x.shape).astype(np.float32)
    # the whole grid: with patience a walk from elsewhere may stop at another local minimum of the
    # (noisy) validation curve
    settings = {"Cs": [1e-3, 1e-2, 1e-1, 1.0], "solver": solver, "tol": 1e-6, "gap_tol": None, "max_iter": 1000,
                "patience": None}  # fmt: skip
    if solver == "preconditioned_lbfgs":
        settings["select_rows"] = 1000  # the subsample walk starts warm too
    xt, yt, xv, yv = x[:2000], y[:2000], x[2000:], y[2000:]
    previous = LinearProbe(**settings).fit(before[:2000], yt, before[2000:], yv)
    init = {"C": previous.C_, "coef": previous.coef_, "intercept": previous.intercept_}
    cold = LinearProbe(**settings).fit(xt, yt, xv, yv)
    warm = LinearProbe(**settings).fit(xt, yt, xv, yv, init=init)
    assert warm.C_ == cold.C_
    assert standardised_objective(warm, xt, yt) == pytest.approx(standardised_objective(cold, xt, yt), rel=1e-6)
    assert warm.path_[0]["C"] == previous.C_  # the walk (the subsample's, if any) starts at the previous C
    # the previous C's fit from the previous weights beats one from zero (the walks' totals are within a
    # few iterations for scikit-learn's lbfgs, whose cold walk is warm from its second C: 47 and 46)
    from_zero = LinearProbe(**{**settings, "Cs": [previous.C_]}).fit(xt, yt, xv, yv)
    assert warm.path_[0]["n_iter"] < from_zero.path_[0]["n_iter"]
    with pytest.raises(ValueError, match=r"init: a probe of coef \(3, 29\).*expected \(3, 30\)"):
        LinearProbe(**settings).fit(xt, yt, xv, yv, init={**init, "coef": init["coef"][:, 1:]})


def test_fit_points_warm_starts_each_point_from_the_previous_jobs_weights_or_reuses_them(tmp_path):
    x, y = separable(900, d=40, seed=6)
    probe = {"Cs": [0.1, 1.0], "solver": "preconditioned_lbfgs", "tol": 1e-6, "max_iter": 1000, "warm_start": True}
    for step, shift in ((0, 0.0), (1, 0.05)):  # "layer" changes between the checkpoints, "same" does not
        layer = x + np.float32(shift) * x.std(axis=0)
        activation_file(tmp_path / f"step{step}.h5", {"layer": layer, "same": x[:, :20]}, y, step=step)
    points = [{"point": "layer", "layer_index": 1, "probe": probe}, {"point": "same", "layer_index": 0, "probe": probe}]
    first = fit_points({"experiment": "e", "repeat": 0, "step": 0, "points": points}, tmp_path / "step0.h5",
                       tmp_path / "p0.json", tmp_path / "p0.npz")  # fmt: skip
    second = fit_points({"experiment": "e", "repeat": 0, "step": 1, "points": points}, tmp_path / "step1.h5",
                        tmp_path / "p1.json", tmp_path / "p1.npz", warm_from=tmp_path / "p0.npz")  # fmt: skip
    assert [r["start"] for r in first] == ["cold", "cold"] and [r["start"] for r in second] == ["warm", "reused"]
    assert all(0 <= r["gap_bound"] < 1e-4 for r in first + second[:1]) and second[1]["gap_bound"] is None
    assert second[0]["path"][0]["C"] == first[0]["C"] and second[0]["n_iter"] > 0
    # the unchanged point's probe is the previous one, scored again: the same numbers, no fit
    assert second[1]["path"] == [] and second[1]["n_iter"] == 0
    for key in ("C", "converged", "train_error", "train_loss", "val_error", "val_loss", "test_error", "test_loss"):
        assert second[1][key] == first[1][key]
    before, after = np.load(tmp_path / "p0.npz"), np.load(tmp_path / "p1.npz")
    assert np.array_equal(before["same.coef"], after["same.coef"]) and after["same.digest"] == before["same.digest"]
    assert after["layer.digest"] != before["layer.digest"]
    np.savez(tmp_path / "other.npz", **{"layer.C": 1.0})
    with pytest.raises(ValueError, match=r"other.npz: no probe of \['same'\] \(the job's points\)"):
        fit_points({"experiment": "e", "repeat": 0, "step": 1, "points": points}, tmp_path / "step1.h5",
                   tmp_path / "p2.json", tmp_path / "p2.npz", warm_from=tmp_path / "other.npz")  # fmt: skip


@pytest.mark.parametrize(
    "settings, k, low_rank",
    [
        ({"solver": "lbfgs"}, 3, False),
        ({"solver": "lbfgs"}, 2, False),
        ({"solver": "preconditioned_lbfgs"}, 3, False),
        ({"solver": "preconditioned_lbfgs", "standardize": False}, 2, False),
        ({"solver": "preconditioned_lbfgs", "whiten_max_width": 20}, 3, True),  # fitted on a rank-8 basis
    ],
)
def test_a_probe_warm_started_from_its_own_solution_starts_at_the_optimum(settings, k, low_rank):
    x, y = separable(1500, d=40, k=k, seed=11)
    if low_rank:
        x = (x[:, :8] @ np.random.default_rng(12).normal(size=(8, 40))).astype(np.float32)
        y = np.argmax(x[:, :k], axis=1)
    y = np.where(np.random.default_rng(13).random(1500) < 0.1, (y + 1) % k, y)
    params = {"Cs": [1e-2, 1e-1, 1.0], "tol": 1e-6, "max_iter": 2000, **settings}
    cold = LinearProbe(**params).fit(x[:1000], y[:1000], x[1000:], y[1000:])
    assert (cold.reduced_rank_ is not None) == low_rank
    init = {"C": cold.C_, "coef": cold.coef_, "intercept": cold.intercept_}
    warm = LinearProbe(**params).fit(x[:1000], y[:1000], x[1000:], y[1000:], init=init)
    # the start maps back to the same point in the coordinates fitted: nothing left to do at that C
    assert warm.path_[0]["C"] == cold.C_ and warm.path_[0]["n_iter"] <= 3  # cold: 6-42, from half the weights: 6-10
    assert warm.C_ == cold.C_ and np.allclose(warm.coef_, cold.coef_, rtol=1e-3, atol=1e-3 * np.abs(cold.coef_).max())


def test_a_probe_is_reused_only_on_the_same_data_labels_and_settings_once_converged(tmp_path):
    x, y = separable(900, d=20, seed=14)
    labels = {"step0": y, "step1": y, "step2": y.copy()}
    labels["step2"][800:] = (labels["step2"][800:] + 1) % 3  # test labels only
    for step, lab in labels.items():
        activation_file(tmp_path / f"{step}.h5", {"a": x, "b": x}, lab, step=int(step[-1]))
    probe = {"Cs": [0.1, 1.0], "solver": "preconditioned_lbfgs", "tol": 1e-6, "max_iter": 1000, "warm_start": True}

    def run(step: int, points: list, warm_from=None, reuse_from=None) -> list[str]:
        settings = {"experiment": "e", "repeat": 0, "step": step, "points": points}
        out = tmp_path / f"p{step}"
        results = fit_points(settings, tmp_path / f"step{step}.h5", out.with_suffix(".json"), out.with_suffix(".npz"),
                             warm_from, reuse_from=reuse_from)  # fmt: skip
        return [r["start"] for r in results]

    points = [{"point": "a", "layer_index": 0, "probe": probe},
              {"point": "b", "layer_index": 1, "probe": {**probe, "max_iter": 1}}]  # fmt: skip
    assert run(0, points) == ["cold", "cold"]
    assert run(1, points, tmp_path / "p0.npz") == ["reused", "warm"]  # b did not converge at step 0: fitted again
    assert run(2, points, tmp_path / "p1.npz") == ["warm", "warm"]  # other test labels
    other = [{**points[0], "probe": {**probe, "tol": 1e-5}}, points[1]]  # other settings
    assert run(1, other, tmp_path / "p0.npz") == ["warm", "warm"]
    # warm_start off: the first checkpoint's probes (--reuse-from) are reused all the same, and
    # nothing else is
    off = [{**p, "probe": {k: v for k, v in p["probe"].items() if k != "warm_start"}} for p in points]
    assert run(0, off) == ["cold", "cold"]
    assert run(1, off, reuse_from=tmp_path / "p0.npz") == ["reused", "cold"]
    assert run(2, off, reuse_from=tmp_path / "p0.npz") == ["cold", "cold"]  # other test labels
    assert run(1, off) == ["cold", "cold"]


@pytest.mark.parametrize("n_train", [1, 40])
def test_a_single_class_training_split_is_no_fit_and_says_so(tmp_path, n_train):
    x, y = separable(300, d=6, seed=4)
    y[:n_train] = 2  # one row, or 40 rows of one class
    path = activation_file(tmp_path / "act.h5", {"layer": x}, y, splits=((0, n_train), (100, 200), (200, 300)))
    probe = {"Cs": [0.1, 1.0], "solver": "preconditioned_lbfgs", "tol": 1e-6, "max_iter": 100}
    settings = {
        "experiment": "e",
        "repeat": 0,
        "step": 0,
        "points": [{"point": "layer", "layer_index": 0, "probe": probe}],
    }
    (r,) = fit_points(settings, path, tmp_path / "p.json", tmp_path / "p.npz")
    assert r["status"] == "single_class" and r["converged"] is False and np.isnan(r["C"])
    assert "all of class 2: no probe fitted" in r["warnings"][0] and "constant" not in " ".join(r["warnings"])
    assert r["test_error"] == pytest.approx(np.mean(y[200:] != 2)) and r["train_error"] == 0.0


@pytest.mark.parametrize("solver", ["preconditioned_lbfgs", "lbfgs"])
def test_a_validation_optimum_beyond_the_grid_extends_the_walk_or_is_flagged(solver):
    # nearly separable, many rows per weight: validation error keeps falling as C grows past the grid
    rng = np.random.default_rng(0)
    w = rng.standard_normal(10) * 3

    def draw(n):
        x = rng.standard_normal((n, 10)).astype(np.float32)
        return x, (x @ w + 0.05 * rng.standard_normal(n) > 0).astype(int)

    (x, y), (xv, yv) = draw(20000), draw(10000)
    kw = {"Cs": [1e-6, 1e-5, 1e-4], "solver": solver, "tol": 1e-6, "max_iter": 1000}
    probe = LinearProbe(**kw).fit(x, y, xv, yv)  # three decades past the grid by default
    inside = LinearProbe(**kw, extend_decades=0).fit(x, y, xv, yv)
    assert inside.C_ == 1e-4 and inside.C_limit_ == "upper"  # at the grid's edge: flagged
    assert probe.C_ > 1e-4 and probe.val_error_ < inside.val_error_
    walked = [r["C"] for r in probe.path_]
    assert walked[:3] == [1e-5, 1e-4, 1e-6] and walked[3] == pytest.approx(1e-3)  # the grid, then beyond
    assert probe.C_limit_ == ("upper" if probe.C_ == pytest.approx(1e-1) else "")


@pytest.mark.parametrize(
    "gains, chosen, last, flagged",
    [
        ((-0.01, 0.01, 0.01), 1.0, 10.0, False),  # worse past the grid: stop at once
        ((0.001, 0.01, 0.01), 10.0, 10.0, False),  # 10 rows better (a standard error is 40): the best, then stop
        ((0.01, 0.001, 0.01), 100.0, 100.0, False),  # 100 rows better, then 10: stop there
        ((0.01, 0.01, 0.01), 1000.0, 1000.0, True),  # better by a decade to the last reachable: flagged
        # the last reachable C the best by 10 rows: the curve flattened there, nothing lies beyond
        ((0.01, 0.01, 0.001), 1000.0, 1000.0, False),
    ],
)
def test_the_walk_goes_past_the_grid_only_while_each_decade_gains_beyond_noise(
    gains, chosen, last, flagged, monkeypatch
):
    # each C's validation error as given, on 10,000 validation rows (a standard error of 0.004 at 20%)
    import probes.estimator as estimator

    curve = {0.01: 0.30, 0.1: 0.25, 1.0: 0.20}
    for C, gain in zip((10.0, 100.0, 1000.0), gains):
        curve[C] = curve[C / 10] - gain
    monkeypatch.setattr(estimator, "metrics", lambda coef, intercept, classes, x, y: (curve[coef[0][0]],) * 2)

    def fitter(C, start):
        return {"coef": np.array([[C]]), "intercept": np.zeros(1)}, 1, True, 100

    probe = LinearProbe(Cs=[0.01, 0.1, 1.0], extend_decades=3)
    probe.classes_, probe.path_ = np.arange(2), []
    best, _ = probe._walk(fitter, np.zeros((10000, 1), np.float32), np.zeros(10000))
    assert best["C"] == chosen and [r["C"] for r in probe.path_][-1] == last
    assert probe.C_limit_ == ("upper" if flagged else "")


@pytest.mark.parametrize("last_gain, flagged", [(0.0001, False), (0.02, True)])
def test_the_full_rows_walk_keeps_the_subsample_walks_finding_that_the_curve_flattened(last_gain, flagged, monkeypatch):
    # validation error by C (1,000 validation rows: a standard error of 0.012 at 16%), each decade past
    # the grid 0.02 better, the last reachable (1000) better by last_gain: the subsample's walk fits up
    # to 1000; the full rows' walk starts there and fits nothing further out
    curve = {0.01: 0.30, 0.1: 0.25, 1.0: 0.20, 10.0: 0.18, 100.0: 0.16, 1000.0: 0.16 - last_gain}
    real = LinearProbe._fit_and_record

    def record(self, fitter, C, start, x_val, y_val):
        r = real(self, fitter, C, start, x_val, y_val)
        self.path_[-1]["val_error"] = r["val_error"] = curve[C]
        return r

    monkeypatch.setattr(LinearProbe, "_fit_and_record", record)
    rng = np.random.default_rng(0)
    x, xv = rng.standard_normal((2000, 5)).astype(np.float32), rng.standard_normal((1000, 5)).astype(np.float32)
    y, yv = (x[:, 0] > 0).astype(int), (xv[:, 0] > 0).astype(int)
    probe = LinearProbe(Cs=[0.01, 0.1, 1.0], select_rows=500).fit(x, y, xv, yv)
    assert probe.C_ == 1000.0 and [r["C"] for r in probe.path_ if r["rows"] == 2000] == [1000.0, 1000.0]
    assert probe.C_limit_ == ("upper" if flagged else "")
