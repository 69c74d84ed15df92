"""What float16 activation files (``extract.dtype: float16``) change in a probe job's results.

Usage: OMP_NUM_THREADS=1 python benchmarks/float16.py ACTIVATIONS.h5 SETTINGS.json OUT_DIR
    [--compression lzf] [--block-rows 500]

Rewrites the job's points of ACTIVATIONS.h5 (float32) as ``probes extract`` would store them
in float16 (``activations.write_activations``, in blocks of ``extract.batch_size`` rows: 500
by default, the first deciding whether a point stays float32), fits the job
(``probe.fit_points``, SETTINGS as ``probes fit --settings`` takes it) on both files, and
prints per point: the chosen C, train / val / test error and status on each, the bytes of the
point's datasets on disk in each file, and how the copy stored it (float32 where float16 would
round away its spread).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import h5py
import numpy as np

from probes.activations import open_point, write_activations
from probes.probe import fit_points

SPLITS = ("train", "val", "test")


def rewrite(src: Path, dst: Path, points: list[str], compression: str | None, block: int) -> None:
    """``points`` of ``src`` stored as float16 in ``dst``, block by block, with ``src``'s attributes."""
    with h5py.File(src, "r") as f:
        attrs = {k: v for k, v in f.attrs.items() if k != "complete"}
    with write_activations(dst, attrs, compression, 1, False, "float16") as out:
        for split in SPLITS:
            for i, point in enumerate(points):
                with open_point(src, split, point) as (ds, labels):
                    if i == 0:
                        out.split(split, labels)
                    for start in range(0, ds.shape[0], block):
                        out.rows(split, point, i, start, np.asarray(ds[start : start + block], np.float32))


def stored(path: Path, point: str) -> tuple[int, str]:
    """The bytes on disk of ``point``'s datasets and their dtype."""
    with h5py.File(path, "r") as f:
        return sum(f[f"{s}/{point}"].id.get_storage_size() for s in SPLITS), str(f[f"train/{point}"].dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("activations", type=Path)
    ap.add_argument("settings", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--compression", default="lzf", help="HDF5 filter of the float16 copy (default: config.yaml's lzf)")
    ap.add_argument("--block-rows", type=int, default=500, help="rows per write (extract.batch_size; default 500)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = json.loads(a.settings.read_text())
    points = [p["point"] for p in settings["points"]]
    a.out.mkdir(parents=True, exist_ok=True)
    half = a.out / "float16.h5"
    rewrite(a.activations, half, points, None if a.compression == "none" else a.compression, a.block_rows)
    results = {}
    for name, path in (("float32", a.activations), ("float16", half)):
        results[name] = fit_points(settings, path, a.out / f"{name}.json", a.out / f"{name}.npz")
    print("| point | C (32 / 16) | train error | val error | test error | status | MB on disk | copy stored as |")
    print("|---|---|---|---|---|---|---|---|")
    for full, low in zip(results["float32"], results["float16"]):
        errors = " | ".join(f"{100 * full[s + '_error']:.2f} / {100 * low[s + '_error']:.2f}%" for s in SPLITS)
        (size32, _), (size16, dtype) = stored(a.activations, full["point"]), stored(half, full["point"])
        print(f"| {full['point']} | {full['C']:g} / {low['C']:g} | {errors} | {full['status']} / {low['status']} "
              f"| {size32 / 1e6:.0f} / {size16 / 1e6:.0f} | {dtype} |")  # fmt: skip
    diff = [
        abs(f[s + "_error"] - h[s + "_error"]) for f, h in zip(results["float32"], results["float16"]) for s in SPLITS
    ]
    print(f"\nlargest error difference: {100 * max(diff):.2f} points over {len(diff) // 3} probes")


if __name__ == "__main__":
    main()
