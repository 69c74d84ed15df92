"""Extraction: run a checkpoint over every split once, streaming activations to HDF5."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import h5py
import torch
import torch.nn.functional as F

from .activations import chunk_rows
from .atomic import atomic_output
from .data import SPLITS, data_fingerprint, load_splits
from .files import write_json
from .models import build_model
from .train import load_checkpoint, model_fingerprint

log = logging.getLogger(__name__)


def extract(
    settings: dict,
    checkpoint: Path,
    data_dir: Path,
    out: Path,
    metrics_out: Path | None = None,
) -> dict:
    """Run ``checkpoint`` over every split once, streaming ``settings["points"]`` into ``out``.

    ``settings`` holds ``experiment, repeat, model, dataset, points, extract``.
    Also evaluates the model itself (loss, accuracy per split) and returns those
    metrics, written to ``metrics_out`` as JSON when given.
    """
    ex = settings["extract"]
    state = load_checkpoint(checkpoint, settings)
    model = build_model(settings["model"])
    model.load_state_dict(state["state_dict"])
    model.eval()
    splits = load_splits(settings["dataset"], data_dir, settings["repeat"])
    points = list(settings["points"])
    out = Path(out)
    # fletcher32: a checksum per chunk, so bytes damaged on disk fail the read instead of giving numbers
    opts = {"compression": ex["compression"], "shuffle": ex["shuffle"], "fletcher32": True}
    if ex["compression"] == "gzip":
        opts["compression_opts"] = ex["compression_level"]
    metrics = {
        "experiment": settings["experiment"],
        "repeat": settings["repeat"],
        "step": state["step"],
        "epoch": state["epoch"],
    }
    t0 = last_line = time.time()
    with atomic_output(out) as tmp, h5py.File(tmp, "w", rdcc_nbytes=16 << 20) as f:
        f.attrs.update(
            experiment=settings["experiment"], repeat=settings["repeat"], step=state["step"],
            model=json.dumps(settings["model"], sort_keys=True),
            model_fingerprint=model_fingerprint(settings["model"]),
            data_fingerprint=data_fingerprint(settings["dataset"], settings["repeat"]),
            points=points, complete=False,
        )  # fmt: skip
        for split in SPLITS:
            x, y = splits[split]
            n = len(x)
            group = f.create_group(split)
            group.create_dataset("labels", data=y, fletcher32=True)
            datasets = {}
            total_loss, correct = 0.0, 0
            with torch.no_grad():
                for i in range(0, n, ex["batch_size"]):
                    acts = model.forward_points(torch.from_numpy(x[i : i + ex["batch_size"]]))
                    yb = torch.from_numpy(y[i : i + ex["batch_size"]])
                    total_loss += F.cross_entropy(acts["logits"], yb, reduction="sum").item()
                    correct += (acts["logits"].argmax(1) == yb).sum().item()
                    for layer, p in enumerate(points):
                        a = acts[p].flatten(1).numpy()
                        if p not in datasets:
                            w = a.shape[1]
                            datasets[p] = group.create_dataset(
                                p, shape=(n, w), dtype="f4", chunks=(chunk_rows(w, n), w), **opts
                            )
                            datasets[p].attrs.update(point=p, layer_index=layer, width=w, step=state["step"])
                        datasets[p][i : i + len(a)] = a
                    if time.time() - last_line >= 60:  # a line a minute at least
                        last_line = time.time()
                        log.info("%s: %d of %d rows (%.1f s)", split, i + len(yb), n, last_line - t0)
            loss, acc = total_loss / n, correct / n
            metrics[f"{split}_loss"], metrics[f"{split}_acc"] = loss, acc
            log.info(
                "%s: %d rows, %d points (%.1f s); model loss %.4f acc %.4f",
                split,
                n,
                len(points),
                time.time() - t0,
                loss,
                acc,
            )
        f.attrs["complete"] = True
    log.info("wrote %s (%.1f MB)", out, out.stat().st_size / 1e6)
    if metrics_out is not None:
        write_json(metrics, metrics_out)
    return metrics
