"""The slurm profile for real: the tiny workflow through a running SLURM cluster.

Needs a SLURM controller this machine can submit to (``.ci/slurm-cluster.sh start``
makes a single-node one; `.ci/run` starts it) and snakemake-executor-plugin-slurm.
Skipped, saying why, when either is missing. Checks that jobs went through SLURM
(their SLURM job IDs, and slurmctld's record of each), that the probe jobs ran
bundled into group jobs, and that the results equal a local run's.
"""

import csv
import re
import shutil
import subprocess

import pytest
import yaml
from conftest import REPO, snakemake

EXPERIMENTS = ("tiny_convnet", "tiny_untrained_mlp")


def slurm_problem() -> str | None:
    """Why the test cannot run here, or None."""
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[cluster]')"
    if not shutil.which("sinfo"):
        return "no SLURM client (sinfo) on PATH; start a test cluster with .ci/slurm-cluster.sh start"
    up = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if up.returncode != 0 or not re.search(r"idle|mix|alloc", up.stdout):
        return f"no SLURM node is up (sinfo: {(up.stdout + up.stderr).strip()[:200]!r}); try .ci/slurm-cluster.sh start"
    queued = subprocess.run(["squeue", "-h"], capture_output=True, text=True, timeout=30).stdout.strip()
    if queued:  # others' jobs would hold the node and the run would only time out
        return f"the SLURM cluster is busy with other jobs (squeue: {queued[:200]!r}); the test needs it idle"
    return None


def table(path) -> list[dict]:
    """probes.csv without the columns that measure time."""
    return [{k: v for k, v in r.items() if k != "fit_seconds"} for r in csv.DictReader(open(path))]


def test_tiny_workflow_through_slurm_equals_local_run(tiny_run, tmp_path):
    problem = slurm_problem()
    if problem:
        pytest.skip(problem)
    local, config = tiny_run
    c = dict(config)
    c["experiments"] = {k: v for k, v in config["experiments"].items() if k in EXPERIMENTS}
    c["figures"] = {k: v for k, v in config["figures"].items() if v["experiment"] in EXPERIMENTS}
    c["animations"] = {}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(c))
    run = snakemake(
        tmp_path, "--profile", str(REPO / "profiles/slurm"),
        "--cores", "2",  # the test node's cores: a group job runs at most two probes at once
        "--set-threads", "train=1",  # as the local run, so training is bit-identical
        "--slurm-init-seconds-before-status-checks", "5",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", run.stderr)
    assert len(submitted) >= 10, run.stderr[-3000:]
    groups = [log for _, log in submitted if "group_probes" in log]
    assert groups, "probe jobs were not bundled into group jobs"
    for job_id, _ in submitted:  # slurmctld knows every one of them, finished
        shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True)
        assert "JobState=COMPLETED" in shown.stdout, (job_id, shown.stdout + shown.stderr)
    for name in EXPERIMENTS:
        assert table(tmp_path / f"results/{name}/probes.csv") == table(local / f"results/{name}/probes.csv")
