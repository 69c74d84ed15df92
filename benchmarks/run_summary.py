"""Summarise a finished run from Snakemake's per-job benchmark files.

Usage: python benchmarks/run_summary.py [results]   (prints a Markdown table)
Per job: wall seconds and peak resident memory (max_rss, MB), read from
``<results>/benchmarks/<rule>/**.tsv``; then per rule: job count, total and
largest wall time, largest peak memory.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path


def main(results: Path) -> None:
    root = results / "benchmarks"
    per_rule: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    for tsv in sorted(root.rglob("*.tsv")):
        with open(tsv) as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        rss = float(row["max_rss"]) if row["max_rss"] not in ("-", "NA", "") else float("nan")
        rule = tsv.relative_to(root).parts[0]
        per_rule[rule].append((str(tsv.relative_to(root).with_suffix("")), float(row["s"]), rss))
    print("| job | wall s | peak RSS MB |\n|---|---:|---:|")
    for jobs in per_rule.values():
        for name, s, rss in jobs:
            print(f"| {name} | {s:.1f} | {rss:.0f} |")
    print("\n| rule | jobs | total wall s | longest s | peak RSS MB |\n|---|---:|---:|---:|---:|")
    for rule, jobs in per_rule.items():
        print(
            f"| {rule} | {len(jobs)} | {sum(j[1] for j in jobs):.1f} | {max(j[1] for j in jobs):.1f} | {max(j[2] for j in jobs):.0f} |"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results"))
