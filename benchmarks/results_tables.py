"""docs/results.md's tables, from a run's probe and model tables.

Usage: python benchmarks/results_tables.py RESULTS [figure3] [figure5] [mlps]

Prints each table as Markdown, then a line of the probes' status counts and chosen C's.
RESULTS is the run's ``results/`` directory (``<experiment>/probes.csv`` and ``model.csv``).
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import Counter
from pathlib import Path

FIG3_LAYERS = (0, 1, 2, 4, 8, 16, 24, 32)
MLP_LAYERS = (0, 1, 8, 16, 32, 63, 64, 72, 96, 128)
MLPS = {"mlp128_aux": "Fig. 7 (aux heads)", "mlp128_skip": "Fig. 8 (skip 0→64)", "mlp128_plain": "control (neither)"}


def rows(results: Path, experiment: str, table: str) -> list[dict]:
    with open(results / experiment / f"{table}.csv", newline="") as f:
        return list(csv.DictReader(f))


def flags(probes: list[dict]) -> str:
    return f"status {dict(Counter(p['status'] for p in probes))}, C {dict(Counter(p['C'] for p in probes))}"


def pct(x: str | float, digits: int = 1) -> str:
    return f"{100 * float(x):.{digits}f}%"


def figure3(results: Path) -> None:
    probes = rows(results, "fig3_untrained_mlp", "probes")
    by_layer = {i: [p for p in probes if int(p["layer_index"]) == i] for i in FIG3_LAYERS}
    print("| layer | " + " | ".join("0 (input)" if i == 0 else str(i) for i in FIG3_LAYERS) + " |")
    print("|---|" + "---:|" * len(FIG3_LAYERS))
    errors = [[float(p["test_error"]) for p in by_layer[i]] for i in FIG3_LAYERS]
    print("| test error | " + " | ".join(f"{pct(statistics.mean(e))} ± {100 * statistics.stdev(e):.1f}" for e in errors) + " |")  # fmt: skip
    norms = [statistics.mean(float(p["activation_norm"]) for p in by_layer[i]) for i in FIG3_LAYERS]
    print("| activation norm | " + " | ".join(f"{v:#.3g}" for v in norms) + " |")
    print(f"\n{len({p['repeat'] for p in probes})} repeats; {flags(probes)}\n")


def figure5(results: Path) -> None:
    probes = rows(results, "mnist_convnet", "probes")
    steps = sorted({int(p["step"]) for p in probes})
    first, last = steps[0], steps[-1]
    at = {(p["point"], int(p["step"])): p for p in probes}
    print("| probe point | at initialisation | after training |\n|---|---:|---:|")
    for p in sorted((p for p in probes if int(p["step"]) == first), key=lambda p: int(p["layer_index"])):
        a, b = at[(p["point"], first)], at[(p["point"], last)]
        print(f"| {p['point']} | {pct(a['test_error'], 2)} | {pct(b['test_error'], 2)} |")
    model = {int(m["step"]): m for m in rows(results, "mnist_convnet", "model")}
    print(f"\nsteps {first} and {last}; model test accuracy {pct(model[last]['test_acc'], 2)}; {flags(probes)}\n")


def mlps(results: Path) -> None:
    print("| layer | " + " | ".join(MLPS.values()) + " |\n|---|" + "---|" * len(MLPS))
    probes = {name: rows(results, name, "probes") for name in MLPS}
    models = {name: {int(m["step"]): m for m in rows(results, name, "model")} for name in MLPS}
    steps = sorted(models["mlp128_aux"])
    for layer in MLP_LAYERS:
        cells = []
        for name in MLPS:
            at = {int(p["step"]): p for p in probes[name] if int(p["layer_index"]) == layer}
            cells.append(" / ".join(f"{100 * float(at[s]['train_error']):.1f}" for s in steps) + "%")
        print(f"| {'input' if layer == 0 else layer} | " + " | ".join(cells) + " |")
    cells = [" / ".join(f"{100 * float(models[n][s]['test_acc']):.1f}" for s in steps) + "%" for n in MLPS]
    print("| model test accuracy | " + " | ".join(cells) + " |\n")
    for name in MLPS:
        losses = [round(float(models[name][s]["train_loss"]), 3) for s in steps]
        print(f"{name}: steps {steps}, training loss {losses}; {flags(probes[name])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("tables", nargs="*", choices=["figure3", "figure5", "mlps"], default=["figure3", "figure5", "mlps"])
    a = ap.parse_args()
    for table in a.tables:
        {"figure3": figure3, "figure5": figure5, "mlps": mlps}[table](a.results)


if __name__ == "__main__":
    main()
