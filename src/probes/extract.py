"""Extraction: run a checkpoint over every split once, streaming activations to HDF5."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .activations import write_activations
from .capture import capture
from .checkpoints import load_checkpoint, load_weights
from .datasets import SPLITS, load_splits
from .datasets import fingerprint as data_fingerprint
from .factory import build_model, model_fingerprint
from .files import write_json
from .train import resolve_device

log = logging.getLogger(__name__)


def extract(
    settings: dict,
    checkpoint: Path,
    data_dir: Path,
    out: Path,
    metrics_out: Path | None = None,
    device: str = "cpu",
) -> dict:
    """Run ``checkpoint`` over every split once, streaming ``settings["points"]`` into ``out``.

    ``settings`` holds ``experiment, repeat, model, dataset, points, pool, extract`` and, for a
    checkpoint written by someone else's training, its ``step`` (``external: true``). The points
    are captured by forward hooks (``capture.py``), one forward pass a batch, on ``device``. Also
    evaluates the model itself (loss, accuracy per split) and returns those metrics, written to
    ``metrics_out`` as JSON when given.
    """
    ex = settings["extract"]
    dev = resolve_device(device)
    model = build_model(settings["model"])
    if settings.get("external"):
        load_weights(checkpoint, model)
        step, epoch = settings["step"], None
    else:
        state = load_checkpoint(checkpoint, settings)
        model.load_state_dict(state["state_dict"])
        step, epoch = state["step"], state["epoch"]
    model.to(dev).eval()
    splits = load_splits(settings["dataset"], data_dir, settings["repeat"])
    points = list(settings["points"])
    pools = settings.get("pool", {})
    out = Path(out)
    metrics = {
        "experiment": settings["experiment"],
        "repeat": settings["repeat"],
        "step": step,
        "epoch": epoch,
    }
    t0 = last_line = time.time()
    attrs = {
        "experiment": settings["experiment"], "repeat": settings["repeat"], "step": step,
        "model": json.dumps(settings["model"], sort_keys=True), "model_fingerprint": model_fingerprint(settings["model"]),
        "data_fingerprint": data_fingerprint(settings["dataset"], settings["repeat"]), "points": points,
    }  # fmt: skip
    with write_activations(
        out, attrs, ex["compression"], ex["compression_level"], ex["shuffle"], ex["dtype"]
    ) as writer:
        for split in SPLITS:
            x, y = splits[split]
            n = len(x)
            writer.split(split, y)
            total_loss, correct = 0.0, 0
            with torch.no_grad():
                for i in range(0, n, ex["batch_size"]):
                    acts, logits = capture(model, points, torch.from_numpy(x[i : i + ex["batch_size"]]).to(dev), pools)
                    yb = torch.from_numpy(y[i : i + ex["batch_size"]]).to(dev)
                    if torch.is_tensor(logits) and logits.dim() == 2 and logits.shape[1] > int(y.max()):
                        total_loss += F.cross_entropy(logits, yb, reduction="sum").item()
                        correct += (logits.argmax(1) == yb).sum().item()
                    else:  # an output that is not class scores for these labels
                        total_loss, correct = float("nan"), float("nan")
                    for layer, p in enumerate(points):
                        writer.rows(split, p, layer, i, acts[p].float().cpu().numpy())
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
    log.info("wrote %s (%.1f MB)", out, out.stat().st_size / 1e6)
    if metrics_out is not None:
        write_json(metrics, metrics_out)
    return metrics
