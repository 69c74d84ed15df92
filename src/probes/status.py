"""A run's progress read from its files (``probes status``): what runs, what it last logged, what is left.

Every job of the workflow sends its output to its log, ``<results>/logs/<stage>/...log`` (so the
log exists from the job's start), and once the job has succeeded Snakemake writes its benchmark at
the same path under ``<results>/benchmarks/`` (``.tsv``, column ``s`` the wall seconds), the last
file the job makes. So a job whose log has no benchmark as new as it has not finished: it failed
(its log holds an ERROR line or a traceback), it was interrupted (no Snakemake runs in the working
directory, or its log is older than the Snakemake run in progress), or it is running. What is
left comes from the newest log of Snakemake itself (``<workdir>/.snakemake/log/``): the jobs it
planned per rule, less those it finished and those running.
"""

from __future__ import annotations

import csv
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

STAGE_ORDER = ["fetch", "train", "extract", "probe", "aggregate", "figure", "animation", "probe_benchmark"]
LINE = re.compile(r"(\d\d):(\d\d):(\d\d) (\w+) [\w.]+: (.*)")  # the CLI's log format
PROBE_LINE = re.compile(r"probe (\d+)/(\d+): (\S+)")
SNAKEMAKE_LOG = re.compile(r"(\d{4}-\d\d-\d\dT\d{6})\.\d+\.snakemake\.log")


@dataclass
class Job:
    """One job's log and what its files say about it."""

    stage: str  # the rule's name
    name: str  # experiment (or figure, animation)
    repeat: int | None
    step: int | None
    job: str | None  # a probe job's points
    log: Path
    state: str  # done, running, failed or interrupted
    seconds: float | None  # wall time, from the benchmark of a done job

    @property
    def label(self) -> str:
        parts = [self.stage, self.name]
        parts += [] if self.repeat is None else [f"r{self.repeat}"]
        parts += [] if self.step is None else [f"step {self.step}"]
        return " ".join(parts)


@dataclass
class SnakemakeRun:
    """What the newest Snakemake log says: when it started, its jobs per rule, those finished."""

    log: Path
    started: float
    planned: dict[str, int]
    finished: dict[str, int]
    parallel: int
    running: bool  # Snakemake's lock files are there


def wall_seconds(benchmark: Path) -> float | None:
    """Column ``s`` of a Snakemake benchmark file (``None`` if unreadable)."""
    try:
        with open(benchmark, newline="") as f:
            return float(next(csv.DictReader(f, delimiter="\t"))["s"])
    except (OSError, StopIteration, KeyError, TypeError, ValueError):
        return None


def read_lines(path: Path) -> list[str]:
    """A log's lines (none if it is gone)."""
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def failed(lines: list[str]) -> bool:
    """Whether a log shows its job failed: a traceback, or a line logged at ERROR or CRITICAL."""
    levels = [m[4] for line in lines if (m := LINE.fullmatch(line))]
    return any(line.startswith("Traceback (most recent call last)") for line in lines) or bool(
        {"ERROR", "CRITICAL"} & set(levels)
    )


def parse_job(results: Path, log: Path, run: SnakemakeRun | None) -> Job:
    """The job a log belongs to, from its path ``logs/<stage>/<name>[/r<repeat>][/step<step>][/<job>].log``."""
    parts = log.relative_to(results / "logs").with_suffix("").parts
    # a fetch rule's log is logs/data/<download>.log, its rule fetch_<download>
    stage = f"fetch_{Path(parts[1]).stem}" if parts[0] == "data" and len(parts) > 1 else parts[0]
    fields: dict = {"repeat": None, "step": None, "job": None}
    for part in parts[2:]:
        m = re.fullmatch(r"(r|step)(\d+)", part)
        if m:
            fields["repeat" if m[1] == "r" else "step"] = int(m[2])
        else:
            fields["job"] = part
    benchmark = results / "benchmarks" / log.relative_to(results / "logs").with_suffix(".tsv")
    mtime = log.stat().st_mtime
    seconds = wall_seconds(benchmark) if benchmark.exists() and benchmark.stat().st_mtime >= mtime else None
    if seconds is not None:
        state = "done"
    elif failed(read_lines(log)):
        state = "failed"
    elif run is not None and (not run.running or mtime < run.started):
        state = "interrupted"
    else:
        state = "running"
    return Job(stage, parts[1] if len(parts) > 1 else parts[0], **fields, log=log, state=state, seconds=seconds)


def snakemake_run(workdir: Path) -> SnakemakeRun | None:
    """The newest run in ``workdir``'s Snakemake logs that planned jobs (``None`` without one): a
    report, or a run with nothing to do, logs no ``Job stats``."""
    logs = sorted((m[1], p) for p in (workdir / ".snakemake/log").glob("*.snakemake.log")
                  if (m := SNAKEMAKE_LOG.fullmatch(p.name)))  # fmt: skip
    stamp, path, lines = next(((s, p, lines) for s, p in reversed(logs) if "Job stats:" in (lines := read_lines(p))),
                              (None, None, []))  # fmt: skip
    if path is None:
        return None
    planned: dict[str, int] = {}
    for line in lines[lines.index("Job stats:") + 3 :]:  # after the header and its rule
        name, _, count = line.rpartition(" ")
        if name.strip() in ("", "total") or not count.isdigit():
            break
        planned[name.strip()] = int(count)
    finished: dict[str, int] = {}
    for line in lines:
        if m := re.fullmatch(r"Finished jobid: \d+ \(Rule: (\S+)\)", line):
            finished[m[1]] = finished.get(m[1], 0) + 1
    cores = next(
        (int(m[1]) for line in lines if (m := re.fullmatch(r"Provided (?:cores|remote nodes): (\d+)", line))), 1
    )
    started = datetime.strptime(stamp, "%Y-%m-%dT%H%M%S").timestamp()
    locked = any((workdir / ".snakemake/locks").glob("*.lock"))
    return SnakemakeRun(path, started, planned, finished, cores, locked)


def started_at(log: Path, lines: list[str]) -> float:
    """When a job started: its log's first time stamp (a clock time, on the day that puts it at or
    before the log's last change), or the log's creation if it has none."""
    mtime = log.stat().st_mtime
    first = next((m for line in lines if (m := LINE.fullmatch(line))), None)
    if first is None:
        return mtime
    last = datetime.fromtimestamp(mtime)
    start = last.replace(hour=int(first[1]), minute=int(first[2]), second=int(first[3]), microsecond=0)
    if start > last + timedelta(seconds=1):
        start -= timedelta(days=1)
    return start.timestamp()


def duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def running_lines(job: Job, elapsed: float, typical: float | None, now: float) -> list[str]:
    """A running job: what it is, how long it has run, and its latest progress line."""
    lines = read_lines(job.log)
    where = f", {job.job}" if job.job else ""
    probes = [m for line in lines if (m := PROBE_LINE.search(line))]
    if probes:
        i, n, point = probes[-1].groups()
        where = f", point {point}" + ("" if n == "1" else f" ({i}/{n} of {job.job})")
    head = f"  {job.label}{where}: {duration(elapsed)} so far"
    if typical is not None:
        head += f" (finished ones took {duration(typical)})"
    latest = next((line for line in reversed(lines) if line.strip()), None)
    if latest is None:
        return [head, "      (nothing logged yet)"]
    m = LINE.fullmatch(latest)
    text = f"{m[1]}:{m[2]}:{m[3]} {m[5]}" if m else latest.strip()
    return [head, f"      {text}  [{duration(now - job.log.stat().st_mtime)} ago]"]


def stage_table(jobs: list[Job], run: SnakemakeRun | None, means: dict[str, float | None]) -> tuple[list[str], dict]:
    """Jobs done, running, failed and left per stage (rule), as lines, and the jobs left per stage."""
    stages = {j.stage for j in jobs} | (set(run.planned) - {"all"} if run else set())  # all: the target

    def rank(stage: str) -> int:
        base = "fetch" if stage.startswith("fetch_") else stage
        return STAGE_ORDER.index(base) if base in STAGE_ORDER else len(STAGE_ORDER)

    stages = sorted(stages, key=lambda s: (rank(s), s))
    lines = [
        "jobs by stage (done: finished, with a benchmark; left: planned by Snakemake, not finished or running):",
        f"  {'stage':<16}{'done':>6}{'running':>9}{'failed':>8}{'left':>6}{'mean wall':>11}",
    ]
    total = dict.fromkeys(("done", "running", "failed", "left"), 0)
    left = {}
    for s in stages:
        count = {state: sum(j.stage == s and j.state == state for j in jobs) for state in ("done", "running", "failed")}
        if run is not None:
            left[s] = max(0, run.planned.get(s, 0) - run.finished.get(s, 0) - count["running"])
        for key, value in {**count, "left": left.get(s, 0)}.items():
            total[key] += value
        wall = "" if means.get(s) is None else duration(means[s])
        lines.append(f"  {s:<16}{count['done']:>6}{count['running']:>9}{count['failed']:>8}"
                     f"{left.get(s, '?'):>6}{wall:>11}")  # fmt: skip
    lines.append(f"  {'total':<16}{total['done']:>6}{total['running']:>9}{total['failed']:>8}"
                 f"{'?' if run is None else total['left']:>6}")  # fmt: skip
    return lines, left


def status(results: Path, workdir: Path | None = None, now: float | None = None) -> str:
    """The progress of the run writing ``results`` (Snakemake's working directory ``workdir``,
    by default the nearest directory above ``results`` holding ``.snakemake/``) as text."""
    results = Path(results)
    if workdir is None:  # the nearest directory above results with Snakemake's .snakemake/ (results/tiny: two up)
        above = results.resolve().parents
        workdir = next((p for p in above if (p / ".snakemake").is_dir()), results.parent)
    workdir = Path(workdir)
    now = time.time() if now is None else now
    if not (results / "logs").is_dir():
        return f"{results}: no job logs ({results / 'logs'}) yet: has the run started here?"
    run = snakemake_run(workdir)
    jobs = [parse_job(results, log, run) for log in sorted((results / "logs").rglob("*.log"))]
    took: dict[tuple[str, str], list[float]] = {}
    for j in jobs:
        if j.seconds is not None:
            took.setdefault((j.stage, j.name), []).append(j.seconds)
    means = {s: mean([t for (st, _), ts in took.items() if st == s for t in ts]) for s in {j.stage for j in jobs}}

    if run is None:
        out = [f"no Snakemake log in {workdir / '.snakemake/log'}: jobs left unknown"]
    else:
        since = datetime.fromtimestamp(run.started).strftime("%Y-%m-%d %H:%M:%S")
        doing = "running" if run.running else "not running (its last run shown)"
        out = [f"Snakemake {doing}: run started {since}, {run.parallel} job(s) at a time ({run.log})"]
    running = [j for j in jobs if j.state == "running"]
    out.append(f"running: {len(running)} job(s)")
    remaining = 0.0  # of the running jobs, by their stage's typical time
    for j in running:
        elapsed = now - started_at(j.log, read_lines(j.log))
        typical = mean(took.get((j.stage, j.name), [])) or means.get(j.stage)
        remaining += max(0.0, (typical or 0.0) - elapsed)
        out += running_lines(j, elapsed, typical, now)
    out += [f"  {j.state}: {j.label}{', ' + j.job if j.job else ''} (see {j.log})"
            for j in jobs if j.state in ("failed", "interrupted")]  # fmt: skip
    table, left = stage_table(jobs, run, means)
    out += table
    if run is not None and not running and not any(left.values()):
        out.append("nothing left of that run")
    elif run is not None:
        work = remaining + sum(n * (means.get(s) or 0.0) for s, n in left.items())
        unknown = [s for s, n in left.items() if n and means.get(s) is None]
        estimate = f"about {duration(work / run.parallel)} left at {run.parallel} job(s) at a time"
        estimate += " (rough: each stage's mean wall time over its finished jobs)"
        if unknown:
            estimate += f"; not counting the {', '.join(unknown)} jobs (none finished yet)"
        out.append(estimate)
    return "\n".join(out)
