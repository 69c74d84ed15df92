"""Long jobs log a line a minute at least: training between its log_every lines, extraction
within a split, the probe solver within one C's fit (what ``probes status`` shows)."""

import logging
import re
from types import SimpleNamespace

import numpy as np

from probes.estimator import LinearProbe
from probes.extract import extract
from probes.train import train_segment

MLP = {"factory": "probes.models:DeepMLP", "kwargs": {"depth": 2, "width": 8, "n_in": 784, "n_classes": 10}}
SETTINGS = {
    "experiment": "t", "repeat": 0, "seed": 0, "model": MLP,
    "dataset": {"name": "mnist", "n_train": 640, "n_val": 100, "n_test": 100, "split_seed": 0},
    "train": {"optimizer": "sgd", "epochs": 2, "batch_size": 64, "lr": 0.01, "lr_decay": 1.0, "momentum": 0.0,
              "weight_decay": 0.0, "log_every": 10**6},
}  # fmt: skip


def slow_clock(monkeypatch, module: str, seconds: float = 25.0) -> None:
    """Make ``module``'s clock advance ``seconds`` at every reading."""
    now = [0.0]

    def tick() -> float:
        now[0] += seconds
        return now[0]

    monkeypatch.setattr(f"{module}.time", SimpleNamespace(time=tick))


def lines(caplog, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records)


def test_training_logs_a_line_a_minute_between_its_log_every_lines(tmp_path, data_dir, caplog, monkeypatch):
    caplog.set_level(logging.INFO, "probes")
    train_segment(SETTINGS, data_dir, 20, tmp_path / "a.pt")
    assert lines(caplog, "minibatch objective") == 0  # log_every 10**6, 20 steps in a few seconds
    slow_clock(monkeypatch, "probes.train")
    caplog.clear()
    train_segment(SETTINGS, data_dir, 20, tmp_path / "b.pt")
    assert 3 <= lines(caplog, "minibatch objective") < 20  # not every step: once 60 s have passed


def test_extraction_logs_rows_done_a_minute(tmp_path, data_dir, caplog, monkeypatch):
    caplog.set_level(logging.INFO, "probes")
    train_segment(SETTINGS, data_dir, 0, tmp_path / "c.pt")
    ex = {**{k: SETTINGS[k] for k in ("experiment", "repeat", "model", "dataset")}, "points": ["input", "layer2"],
          "extract": {"batch_size": 50, "compression": None, "compression_level": 0, "shuffle": False, "dtype": "float32"}}  # fmt: skip
    extract(ex, tmp_path / "c.pt", data_dir, tmp_path / "a.h5")
    assert lines(caplog, " of 640 rows") == 0
    slow_clock(monkeypatch, "probes.extract")
    caplog.clear()
    extract(ex, tmp_path / "c.pt", data_dir, tmp_path / "b.h5")
    rows = [r.getMessage() for r in caplog.records if " of 640 rows" in r.getMessage()]
    assert 3 <= len(rows) < 13 and rows[0].startswith("train: ") and "of 100 rows" in caplog.text


def test_a_long_solver_fit_logs_its_C_iteration_and_objective(caplog, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 20)).astype(np.float32)
    y = (x[:, :3] @ [1.0, -1.0, 0.5] + 0.5 * rng.standard_normal(600) > 0).astype(int)
    caplog.set_level(logging.INFO, "probes")
    slow_clock(monkeypatch, "probes.solver", seconds=40.0)
    LinearProbe(Cs=[0.1], solver="preconditioned_lbfgs", patience=None).fit(x[:400], y[:400], x[400:], y[400:])
    progress = [r.getMessage() for r in caplog.records if ": iteration " in r.getMessage()]
    assert progress and all(
        re.fullmatch(r"C=\S+ on 400 rows: iteration \d+, objective \S+ \(\d+ s\)", p) for p in progress
    )
    assert progress[0].startswith("C=0.1 on 400 rows: iteration ")
