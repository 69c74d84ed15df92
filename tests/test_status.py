"""``probes status`` on a results tree the test writes: running, done, failed and interrupted jobs,
their latest lines, and what is left by the Snakemake log's plan."""

import os
import re
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

from conftest import REPO

from probes.cli import main

START = datetime(2026, 1, 2, 10, 0, 0).timestamp()  # the Snakemake run's start
NOW = START + 3600
SNAKEMAKE_LOG = """Building DAG of jobs...
Provided cores: 2
Job stats:
job          count
---------  -------
train            3
probe            5
figure           1
all              1
total           10

Finished jobid: 4 (Rule: train)
1 of 10 steps (10%) done
Finished jobid: 5 (Rule: probe)
2 of 10 steps (20%) done
"""


def write(path: Path, text: str, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (mtime, mtime))


def clock(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%H:%M:%S")


def job(results: Path, rel: str, lines: list[tuple[float, str]], seconds: float | None = None, at: float = 0):
    """A job's log (lines at times) and, with ``seconds``, its benchmark written at ``at``."""
    text = "".join(f"{clock(t)} INFO probes.x: {line}\n" for t, line in lines)
    write(results / "logs" / f"{rel}.log", text, lines[-1][0] if lines else START + 60)
    if seconds is not None:
        write(results / "benchmarks" / f"{rel}.tsv", f"s\th:m:s\tmax_rss\n{seconds}\t0:00:00\t100\n", at)


def test_status_lists_running_jobs_with_their_latest_line_and_counts_what_is_left(tmp_path, capsys, monkeypatch):
    results = tmp_path / "results"
    write(tmp_path / ".snakemake/log/2026-01-02T100000.123456.snakemake.log", SNAKEMAKE_LOG, START)
    write(tmp_path / ".snakemake/locks/0.input.lock", "", START)
    report = "Building DAG of jobs...\nCreating report...\nReport created.\n"  # plans no jobs: not the run
    write(tmp_path / ".snakemake/log/2026-01-02T103000.000001.snakemake.log", report, START + 1800)
    job(results, "train/exp/r0/step0", [(START + 10, "training"), (START + 40, "wrote it")], 30.0, START + 41)
    # running for 10 minutes, its latest line 10 s ago; its earlier benchmark is older than its log
    job(results, "train/exp/r0/step100", [(START + 3000, "resuming"),
                                         (NOW - 10, "step 30 (epoch 1, 590.0 s): minibatch objective 1.2000")],
        60.0, START + 2000)  # fmt: skip
    job(results, "probe/exp/r0/step0/input", [(START + 50, "probe 1/1: input"), (START + 60, "done")], 10.0, START + 61)
    job(results, "probe/exp/r0/step0/layer1-layer4", [(NOW - 300, "probe 1/4: layer1"), (NOW - 200, "probe 2/4: layer2"),
                                                      (NOW - 5, "C=0.1 on 1000 rows: iteration 40, objective 0.5 (61 s)")])  # fmt: skip
    write(results / "logs/probe/exp/r0/step0/layer5-layer8.log",
          f"{clock(START + 70)} ERROR probes: a.h5: unreadable activations\n", START + 70)  # fmt: skip
    job(results, "probe/exp/r0/step0/old", [(START - 600, "probe 1/1: old")])  # before this Snakemake run
    monkeypatch.setattr("probes.status.time", SimpleNamespace(time=lambda: NOW))
    main(["status", str(results)])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"Snakemake running: run started 2026-01-02 10:00:00, 2 job(s) at a time ({tmp_path}")
    assert out[1] == "running: 2 job(s)"
    assert (
        out[2] == "  probe exp r0 step 0, point layer2 (2/4 of layer1-layer4): 5m 00s so far (finished ones took 10s)"
    )
    assert out[3] == f"      {clock(NOW - 5)} C=0.1 on 1000 rows: iteration 40, objective 0.5 (61 s)  [5s ago]"
    assert out[4] == "  train exp r0 step 100: 10m 00s so far (finished ones took 30s)"
    assert out[5] == f"      {clock(NOW - 10)} step 30 (epoch 1, 590.0 s): minibatch objective 1.2000  [10s ago]"
    assert (
        out[6]
        == f"  failed: probe exp r0 step 0, layer5-layer8 (see {results}/logs/probe/exp/r0/step0/layer5-layer8.log)"
    )
    assert out[7].startswith("  interrupted: probe exp r0 step 0, old (see ")
    table = {line.split()[0]: line.split()[1:] for line in out[9:-1]}
    # left: planned less finished (by the Snakemake log) less running
    assert table == {"stage": ["done", "running", "failed", "left", "mean", "wall"],
                     "train": ["1", "1", "0", "1", "30s"], "probe": ["1", "1", "1", "3", "10s"],
                     "figure": ["0", "0", "0", "1"], "total": ["2", "2", "1", "5"]}  # fmt: skip
    # 1 train (30 s) + 3 probes (10 s each) + the running probe's 10 s typical (past) and train's 30 s (past): 60 s / 2
    assert out[-1] == ("about 30s left at 2 job(s) at a time (rough: each stage's mean wall time over its finished jobs); "
                       "not counting the figure jobs (none finished yet)")  # fmt: skip


def test_without_snakemake_running_or_its_log_nothing_is_running_or_left_is_unknown(tmp_path, capsys):
    results = tmp_path / "results"
    job(results, "probe/exp/r0/step0/input", [(START + 50, "probe 1/1: input")])
    main(["status", str(results)])
    out = capsys.readouterr().out
    assert f"no Snakemake log in {tmp_path}/.snakemake/log: jobs left unknown" in out and "running: 1 job(s)" in out
    write(tmp_path / ".snakemake/log/2026-01-02T100000.123456.snakemake.log", SNAKEMAKE_LOG, START)  # no lock
    main(["status", str(results)])
    out = capsys.readouterr().out
    assert "Snakemake not running (its last run shown)" in out and "running: 0 job(s)" in out
    assert "  interrupted: probe exp r0 step 0, input" in out and "not counting the train, probe, figure jobs" in out
    for rel in ("train/exp/r0/step0", "probe/exp/r0/step0/input"):  # the plan's finished jobs, done
        job(results, rel, [(START + 50, "wrote it")], 10.0, START + 51)
    log = SNAKEMAKE_LOG.replace("train            3", "train            1").replace(
        "probe            5", "probe            1"
    )
    write(
        tmp_path / ".snakemake/log/2026-01-02T100000.123456.snakemake.log",
        log.replace("figure           1\n", ""),
        START,
    )
    main(["status", str(results)])
    assert capsys.readouterr().out.splitlines()[-1] == "nothing left of that run"


def test_every_rule_logs_and_benchmarks_at_the_same_path_under_its_stage():
    """What status relies on: logs/<stage>/X.log has its benchmark at benchmarks/<stage>/X.tsv, and
    the stage directory names the rule (the fetch rules, made in a loop, log under data/<download>)."""
    rules = 0
    for smk in (REPO / "workflow/rules").glob("*.smk"):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.MULTILINE)[1:]:
            name = block.split(":")[0]
            log = re.search(r'f"\{LOGS\}/(.+)\.log"', block)
            bench = re.search(r'f"\{BENCH\}/(.+)\.tsv"', block)
            assert log and bench and log[1] == bench[1], name
            stage = log[1].split("/")[0]
            assert stage == name, (name, stage)
            rules += 1
    assert rules == 7
    fetch = (REPO / "workflow/rules/data.smk").read_text()
    assert 'f"{LOGS}/data/{download.name}.log"' in fetch and 'f"{BENCH}/data/{download.name}.tsv"' in fetch
