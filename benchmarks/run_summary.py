"""Summarise a finished run from Snakemake's per-job benchmark files.

Usage: python benchmarks/run_summary.py [results]   (prints a Markdown table)
Per job: wall and CPU seconds and peak resident memory (max_rss, MB), read from
``<results>/benchmarks/<rule>/**.tsv``; then per rule: job count, total and
largest wall time, total CPU time, largest peak memory.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path


def main(results: Path) -> None:
    root = results / "benchmarks"
    per_rule: dict[str, list[tuple[str, float, float, float]]] = defaultdict(list)
    for tsv in sorted(root.rglob("*.tsv")):
        with open(tsv) as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        rss, cpu = (float(row[k]) if row[k] not in ("-", "NA", "") else float("nan") for k in ("max_rss", "cpu_time"))
        rule = tsv.relative_to(root).parts[0]
        per_rule[rule].append((str(tsv.relative_to(root).with_suffix("")), float(row["s"]), cpu, rss))
    print("| job | wall s | CPU s | peak RSS MB |\n|---|---:|---:|---:|")
    for jobs in per_rule.values():
        for name, s, cpu, rss in jobs:
            print(f"| {name} | {s:.1f} | {cpu:.1f} | {rss:.0f} |")
    print("\n| rule | jobs | total wall s | longest s | total CPU s | peak RSS MB |\n|---|---:|---:|---:|---:|---:|")
    for rule, jobs in per_rule.items():
        wall, cpu, rss = ([j[i] for j in jobs] for i in (1, 2, 3))
        print(f"| {rule} | {len(jobs)} | {sum(wall):.1f} | {max(wall):.1f} | {sum(cpu):.1f} | {max(rss):.0f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results"))
