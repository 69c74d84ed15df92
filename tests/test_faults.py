"""Faults survived for real: processes killed with SIGKILL mid-job, a full disk, a second
workflow on the same directory, a bad config. Each rerun must give what an uninterrupted
run gives, and nothing half-written may ever carry a final name."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, snakemake
from threadpoolctl import threadpool_limits

from probes.activations import ActivationError, read_point
from probes.atomic import DiskFullError
from probes.checkpoints import load_checkpoint
from probes.extract import extract
from probes.probe import fit_points
from probes.train import train_segment

MODEL = {
    "factory": "probes.models:MnistConvnet",
    "kwargs": {"conv1_filters": 4, "conv2_filters": 4, "fc_units": 16},
}  # dropout 0.5: RNG used
TRAIN = {"optimizer": "sgd", "epochs": 40, "batch_size": 64, "lr": 0.01, "lr_decay": 0.95, "momentum": 0.9,
         "weight_decay": 5e-4, "log_every": 50}  # fmt: skip


def settings(n_train: int = 640) -> dict:
    ds = {"name": "mnist", "n_train": n_train, "n_val": 200, "n_test": 200, "split_seed": 0}
    return {"experiment": "k", "repeat": 0, "seed": 5, "model": MODEL, "dataset": ds, "train": TRAIN}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "probes.cli", *args]


def kill_when(cmd: list[str], ready, log: Path, timeout: float = 120) -> None:
    """Start ``cmd`` in its own process group, SIGKILL the group once ``ready()`` holds
    (and in any case before returning)."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(
                    f"{cmd[3:5]} ended (exit {proc.returncode}) before the moment to kill it:\n{log.read_text()}"
                )
            if time.time() > deadline:
                pytest.fail(f"{cmd[3:5]}: not ready after {timeout} s")
            time.sleep(0.02)
        assert proc.poll() is None, "finished before the kill"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


@pytest.fixture
def one_thread():
    """In-process runs on one thread, as the CLI's default ``--threads 1``: the summation order
    of a convolution or a BLAS product, so the last bits, depend on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


def run_ok(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


@pytest.mark.slow
def test_killed_training_job_resumes_from_its_snapshot_bit_for_bit(tmp_path, data_dir, one_thread):
    s, target = settings(), 400  # 40 epochs of 10 minibatches
    ck = tmp_path / "checkpoints"
    ck.mkdir()
    out, snapshot = ck / f"step{target}.pt", ck / f"step{target}.resume.pt"
    cmd = cli("train", "--settings", json.dumps(s), "--data-dir", str(data_dir), "--step", str(target),
              "--resume-dir", str(ck), "--snapshot-seconds", "0", "--out", str(out))  # fmt: skip
    kill_when(cmd, snapshot.exists, tmp_path / "killed.log")  # mid-training, after the first epoch's snapshot
    assert not out.exists()
    killed_at = load_checkpoint(snapshot, s)["step"]
    assert 0 < killed_at < target
    log = run_ok(cmd)
    assert f"resuming from {snapshot}" in log and f"training steps {killed_at} -> {target}" in log
    assert out.exists() and not snapshot.exists()  # the job cleans up its snapshot once done
    resumed = load_checkpoint(out, s)
    whole = train_segment(s, data_dir, target, tmp_path / "whole.pt")  # uninterrupted, from initialisation
    assert resumed["step"] == whole["step"] == target
    for k, v in whole["state_dict"].items():
        assert torch.equal(resumed["state_dict"][k], v), k
    for key, group in whole["optimizer"]["state"].items():
        assert torch.equal(resumed["optimizer"]["state"][key]["momentum_buffer"], group["momentum_buffer"])
    assert torch.equal(resumed["torch_rng"], whole["torch_rng"])  # dropout's random stream too


@pytest.mark.slow
def test_killed_extraction_and_probe_jobs_leave_nothing_that_looks_complete(tmp_path, data_dir, one_thread):
    s = settings(n_train=10000)
    train_segment(s, data_dir, 0, tmp_path / "step0.pt")
    ex = {**{k: s[k] for k in ("experiment", "repeat", "model", "dataset")},
          "points": ["input", "conv1_preact", "fc1_postact", "logits"],
          "extract": {"batch_size": 100, "compression": "lzf", "compression_level": 1, "shuffle": False, "dtype": "float32"}}  # fmt: skip
    act, part = tmp_path / "act.h5", tmp_path / "act.part.h5"
    cmd = cli("extract", "--settings", json.dumps(ex), "--checkpoint", str(tmp_path / "step0.pt"),
              "--data-dir", str(data_dir), "--out", str(act), "--metrics-out", str(tmp_path / "model.json"))  # fmt: skip
    kill_when(cmd, lambda: part.exists() and part.stat().st_size > 4 << 20, tmp_path / "extract.log")
    assert not act.exists() and not (tmp_path / "model.json").exists()
    with pytest.raises(ActivationError, match=str(part)):  # the leftover is refused, never read as data
        read_point(part, "train", "input")
    run_ok(cmd)
    assert not part.exists()
    extract(ex, tmp_path / "step0.pt", data_dir, tmp_path / "whole.h5")
    with h5py.File(act) as a, h5py.File(tmp_path / "whole.h5") as b:
        for split in ("train", "val", "test"):
            for name in [*ex["points"], "labels"]:
                np.testing.assert_array_equal(a[f"{split}/{name}"][:], b[f"{split}/{name}"][:])

    probe = {"Cs": [0.1, 1.0], "solver": "lbfgs", "tol": 1e-6, "max_iter": 300, "standardize": True,
             "patience": None, "random_state": 0}  # fmt: skip
    fit = {"experiment": "k", "repeat": 0, "step": 0,
           "points": [{"point": p, "layer_index": i, "probe": probe} for i, p in enumerate(["fc1_postact", "input"])]}  # fmt: skip
    out_json, out_npz, log = tmp_path / "p.json", tmp_path / "p.npz", tmp_path / "fit.log"
    cmd = cli("fit", "--settings", json.dumps(fit), "--activations", str(act),
              "--out-json", str(out_json), "--out-weights", str(out_npz))  # fmt: skip
    kill_when(cmd, lambda: "probe 2/2" in log.read_text(), log)  # the first probe done, the second fitting
    assert not out_json.exists() and not out_npz.exists()
    run_ok(cmd)
    whole = fit_points(fit, act, tmp_path / "w.json", tmp_path / "w.npz")
    timing = {"fit_seconds", "path"}
    assert [{k: v for k, v in r.items() if k not in timing} for r in json.loads(out_json.read_text())] == [
        {k: v for k, v in r.items() if k not in timing} for r in whole
    ]
    with np.load(out_npz) as a, np.load(tmp_path / "w.npz") as b:
        assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_full_disk_during_extraction_is_reported_and_leaves_no_file(tmp_path, data_dir, monkeypatch):
    s = settings()
    train_segment(s, data_dir, 0, tmp_path / "step0.pt")
    ex = {**{k: s[k] for k in ("experiment", "repeat", "model", "dataset")}, "points": ["input", "conv1_preact"],
          "extract": {"batch_size": 100, "compression": None, "compression_level": 1, "shuffle": False, "dtype": "float32"}}  # fmt: skip
    out = tmp_path / "act" / "step0.h5"
    writes, setitem = [], h5py.Dataset.__setitem__

    def fill_up(self, key, value):  # the disk fills on the fifth block written
        writes.append(key)
        if len(writes) == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        setitem(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", fill_up)
    with pytest.raises(DiskFullError, match=re.escape(f"{out}: disk full (or over quota) while writing it")):
        extract(ex, tmp_path / "step0.pt", data_dir, out)
    assert list(out.parent.iterdir()) == []


def test_full_tmpfs_during_extraction_is_reported_and_leaves_no_file(tmp_path, data_dir):
    """The same on a real 1 MiB file system, where mounting one is allowed (root, not in every
    container); through the CLI, as a workflow job runs it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    try:
        s = settings()
        train_segment(s, data_dir, 0, tmp_path / "step0.pt")
        ex = {**{k: s[k] for k in ("experiment", "repeat", "model", "dataset")}, "points": ["input", "conv1_preact"],
              "extract": {"batch_size": 100, "compression": None, "compression_level": 1, "shuffle": False, "dtype": "float32"}}  # fmt: skip
        out = disk / "step0.h5"  # ~10 MB of activations
        run = subprocess.run(cli("extract", "--settings", json.dumps(ex), "--checkpoint", str(tmp_path / "step0.pt"),
                                 "--data-dir", str(data_dir), "--out", str(out), "--metrics-out", str(disk / "m.json")),
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        assert run.returncode == 1, run.stderr[-2000:]  # an error exit, not a crash
        assert f"ERROR probes: [Errno 28] {out}: disk full (or over quota) while writing it" in run.stderr
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def read_rows(path: Path, drop: set[str]) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


def test_killed_workflow_is_locked_against_a_second_and_reruns_to_the_same_results(tiny_run, tmp_path):
    done, config = tiny_run
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    targets = ["results/tiny_mlp_plain/probes.csv", "results/tiny_mlp_plain/model.csv"]  # the quickest chain
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path)]
    probe_logs, locks = tmp_path / "results/logs/probe/tiny_mlp_plain", tmp_path / ".snakemake/locks"
    refused = []

    def ready() -> bool:
        """First, as soon as the run holds its lock (all its jobs ahead), a second workflow on the
        same directory must be refused; then kill once probe jobs run."""
        if not refused:
            if locks.is_dir() and any(locks.iterdir()):  # --rerun-incomplete, as the profiles: else it may
                # stop before the lock, at the running jobs' outputs marked incomplete
                second = snakemake(tmp_path, "--cores", "1", "--rerun-incomplete", *targets)
                assert second.returncode != 0 and "Directory cannot be locked" in second.stderr, second.stderr[-2000:]
                refused.append(second)
            return False
        return probe_logs.exists() and any(probe_logs.rglob("*.log"))

    kill_when([*cmd, "--cores", "2", *targets], ready, tmp_path / "killed.log", timeout=600)
    assert not (tmp_path / targets[0]).exists()
    stale = snakemake(tmp_path, "--cores", "2", "--rerun-incomplete", *targets)  # the killed run's lock stays
    assert stale.returncode != 0 and "Directory cannot be locked" in stale.stderr, stale.stderr[-2000:]
    assert snakemake(tmp_path, "--unlock", *targets).returncode == 0  # README's recovery (no job outlived the
    rerun = snakemake(tmp_path, "--cores", "2", "--rerun-incomplete", *targets)  # group: nothing to wait for)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for table, drop in (("probes.csv", {"fit_seconds"}), ("model.csv", set())):
        got = read_rows(tmp_path / "results/tiny_mlp_plain" / table, drop)
        assert got == read_rows(done / "results/tiny_mlp_plain" / table, drop), table


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def test_killed_snakemake_alone_recovers_as_the_readme_says(tiny_run, tmp_path):
    """SIGKILL of the Snakemake process only (its jobs run on, orphaned, and finish their outputs),
    then README's "When things go wrong" to the letter: wait for those jobs to end, ``--unlock``,
    rerun with ``--rerun-incomplete``; on the way, the two refusals the README describes."""
    done, config = tiny_run
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    targets = ["results/tiny_mlp_plain/probes.csv", "results/tiny_mlp_plain/model.csv"]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path)]
    probes = tmp_path / "results/tiny_mlp_plain/r0/probes"
    probe_logs = tmp_path / "results/logs/probe/tiny_mlp_plain"
    with open(tmp_path / "killed.log", "w") as out:
        proc = subprocess.Popen([*cmd, "--cores", "2", *targets], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    deadline = time.time() + 600
    while not (probe_logs.exists() and any(probe_logs.rglob("*.log"))):  # a probe job running
        assert proc.poll() is None and time.time() < deadline, (tmp_path / "killed.log").read_text()[-3000:]
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # Snakemake alone, as kill -9 <pid> or the OOM killer does
    assert proc.wait() == -signal.SIGKILL
    assert group_members(proc.pid), "no job outlived Snakemake"
    while group_members(proc.pid):  # 1. wait for the killed run's jobs to end
        assert time.time() < deadline, "orphaned jobs still running"
        time.sleep(0.1)
    assert list(probes.rglob("*.json")), "the orphaned probe job left no output"
    assert not (tmp_path / targets[0]).exists()

    same = snakemake(tmp_path, "--cores", "2", *targets)  # what the README says the same command meets
    assert same.returncode != 0 and "IncompleteFilesException" in same.stdout + same.stderr, same.stderr[-3000:]
    incomplete = snakemake(tmp_path, "--cores", "2", "--rerun-incomplete", *targets)
    assert incomplete.returncode != 0 and "Directory cannot be locked" in incomplete.stdout + incomplete.stderr

    assert snakemake(tmp_path, "--unlock", *targets).returncode == 0  # 2. remove the dead run's lock
    rerun = snakemake(tmp_path, "--cores", "2", "--rerun-incomplete", *targets)  # 3. rerun, remaking them
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for table, drop in (("probes.csv", {"fit_seconds"}), ("model.csv", set())):
        got = read_rows(tmp_path / "results/tiny_mlp_plain" / table, drop)
        assert got == read_rows(done / "results/tiny_mlp_plain" / table, drop), table
    assert not list(tmp_path.rglob("*.part*"))


def test_bad_config_is_refused_before_any_job_runs(tiny_run, tmp_path):
    _, config = tiny_run
    bad = json.loads(json.dumps(config))
    bad["experiments"]["tiny_convnet"]["train"]["lr"] = -0.01
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(bad))
    run = snakemake(tmp_path, "--cores", "2")
    assert run.returncode != 0
    assert "experiments.tiny_convnet.train.lr = -0.01" in run.stderr and "minimum of 0" in run.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()
