"""Training to a checkpoint, resuming from the latest earlier one on disk.

The checkpoint at step ``s`` is a function of the training settings and ``s``
alone: it is made by loading the latest compatible checkpoint before ``s`` (or
initialising) and training the minibatches in between. A checkpoint holds
everything needed to go on exactly as an uninterrupted run would: model and
optimizer state, the step, the torch RNG state (dropout), and the settings; the
minibatch order of every epoch is a pure function of (seed, repeat, epoch). So
where training resumes from changes how long it takes, never what it produces,
and no checkpoint job depends on another: adding a step to a schedule trains
only the new checkpoint, and a killed job's rerun resumes from the last one saved.
A long job also leaves resume snapshots (``step<target>.resume.pt``, at the end of
an epoch, at most every ``snapshot_seconds``) and deletes them once its checkpoint
is written, so a killed job loses at most that much training.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoints import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, save_checkpoint, tensor_digest
from .datasets import fingerprint as data_fingerprint
from .datasets import load_splits
from .factory import build_model, model_fingerprint
from .schedule import steps_per_epoch, total_steps

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """A training run that diverged (a non-finite objective)."""


def epoch_order(seed: int, repeat: int, epoch: int, n: int) -> np.ndarray:
    """The minibatch order of one epoch, reproducible from its coordinates alone."""
    return np.random.default_rng([seed, repeat, epoch]).permutation(n)


def incompatibility(state: dict, settings: dict) -> str | None:
    """Why training with ``settings`` cannot go on from checkpoint ``state`` (``None``: it can)."""
    for key in ("seed", "train", "dataset"):
        if state.get(key) != settings[key]:
            return f"trained with other {key} settings than {settings['experiment']!r} now has"
    return None


def snapshot_path(directory: Path, target: int) -> Path:
    """Where the job training to checkpoint ``target`` keeps its resume snapshot."""
    return Path(directory) / f"step{target}.resume.pt"


def latest_checkpoint(directory: Path, settings: dict, before: int) -> Path | None:
    """The latest checkpoint ``step<N>.pt`` in ``directory`` with ``N < before``, or the
    resume snapshot of the job training to ``before`` if that is later, that training
    with ``settings`` can go on from; incompatible or unreadable ones are skipped."""
    matches = ((re.fullmatch(r"step(\d+)\.pt", p.name), p) for p in Path(directory).glob("step*.pt"))
    found = [(int(m[1]), p) for m, p in matches if m and int(m[1]) < before]
    snapshot, loaded = snapshot_path(directory, before), {}
    if snapshot.exists():
        try:
            loaded[snapshot] = load_checkpoint(snapshot, settings)  # its step is inside it
            found.append((loaded[snapshot]["step"], snapshot))
        except CheckpointError as exc:
            log.info("not resuming from %s: %s", snapshot, exc)
    for step, path in sorted(found, reverse=True):
        try:
            reason = incompatibility(loaded.get(path) or load_checkpoint(path, settings), settings)
        except CheckpointError as exc:
            reason = str(exc)
        if reason is None:
            return path
        log.info("not resuming from %s: %s", path, reason)
    return None


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else the CPU; or ``cpu`` / ``cuda`` (refused when absent)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device = 'cuda': no CUDA device is available here; use auto or cpu")
    return torch.device(name)


def objective(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, weight_decay: float):
    """The model's own ``objective(x, y, weight_decay)`` if it defines one (the paper's auxiliary
    heads do), else the cross-entropy of its output plus ``weight_decay * sum(p^2) / 2`` over all
    parameters; as ``(objective, cross-entropy, logits)``."""
    if hasattr(model, "objective"):
        return model.objective(x, y, weight_decay)
    logits = model(x)
    ce = F.cross_entropy(logits, y)
    if not weight_decay:
        return ce, ce, logits
    return ce + weight_decay * sum(p.pow(2).sum() for p in model.parameters()) / 2, ce, logits


def make_optimizer(model: torch.nn.Module, train: dict) -> torch.optim.Optimizer:
    """``train["optimizer"]``: ``sgd`` (with momentum), ``rmsprop`` (decay 0.9, with momentum) or ``adam``."""
    name, lr, momentum = train["optimizer"], train["lr"], train["momentum"]
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    if name == "rmsprop":
        return torch.optim.RMSprop(model.parameters(), lr=lr, alpha=0.9, momentum=momentum)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    raise ValueError(f"train.optimizer: unknown optimizer {name!r}; expected sgd, rmsprop or adam")


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (in eval mode) on ``(x, y)``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb, yb = torch.from_numpy(x[i : i + batch_size]).to(device), torch.from_numpy(y[i : i + batch_size]).to(device)
        logits = model(xb)
        total_loss += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    model.train(was_training)
    return total_loss / len(x), correct / len(x)


def train_segment(
    settings: dict, data_dir: Path, target_step: int, out: Path, start: Path | None = None,
    snapshot: Path | None = None, snapshot_seconds: float = 600.0, device: str = "cpu",
) -> dict:  # fmt: skip
    """Train from checkpoint ``start`` (or from initialisation) up to ``target_step``; save to ``out``.

    ``settings`` holds ``experiment, repeat, seed, model, dataset, train``; ``device``
    (``resolve_device``) is where the model trains (exact resumption is tested on the CPU). With
    ``snapshot``, the state is also saved there at the end of an epoch once
    ``snapshot_seconds`` have passed since the last save, and removed when ``out``
    is written. Returns the saved checkpoint state.
    """
    tr, ds = settings["train"], settings["dataset"]
    seed, repeat = settings["seed"], settings["repeat"]
    torch.manual_seed(seed * 1_000_003 + repeat)
    dev = resolve_device(device)
    model = build_model(settings["model"]).to(dev)
    optimizer = make_optimizer(model, tr)
    history: list[dict] = []
    step = 0
    if start is not None:
        state = load_checkpoint(start, settings)
        reason = incompatibility(state, settings)
        if reason:
            raise CheckpointError(f"{start}: {reason}")
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])  # onto the parameters' device
        torch.set_rng_state(state["torch_rng"])
        step, history = state["step"], state["history"]
    if target_step < step:
        raise ValueError(f"target step {target_step} is before the start checkpoint's step {step}")
    last = total_steps(ds, tr)
    if target_step > last:
        raise ValueError(f"target step {target_step} is beyond the end of training ({last} steps)")

    splits = load_splits(ds, data_dir, repeat) if target_step > step else None
    spe = steps_per_epoch(ds, tr)
    log.info("%s r%d: training steps %d -> %d (%d per epoch)", settings["experiment"], repeat, step, target_step, spe)
    model.train()
    t0 = last_save = last_line = time.time()
    while step < target_step:
        epoch, offset = divmod(step, spe)
        lr = tr["lr"] * tr["lr_decay"] ** epoch
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = splits["train"]
        order = epoch_order(seed, repeat, epoch, len(x))
        end = min(spe, offset + target_step - step)
        run_loss, run_correct, run_n = 0.0, 0, 0
        for b in range(offset, end):
            idx = order[b * tr["batch_size"] : (b + 1) * tr["batch_size"]]
            xb, yb = torch.from_numpy(x[idx]).to(dev), torch.from_numpy(y[idx]).to(dev)
            loss, ce, logits = objective(model, xb, yb, tr["weight_decay"])
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"{settings['experiment']} r{repeat}: the training objective became {loss.item()} at step "
                    f"{step + 1} (epoch {epoch + 1}): training diverged; lower train.lr (now {tr['lr']:g}) "
                    "or check the data; no checkpoint was written"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            run_loss += ce.item() * len(idx)
            run_correct += (logits.argmax(1) == yb).sum().item()
            run_n += len(idx)
            if step % tr["log_every"] == 0 or time.time() - last_line >= 60:  # a line a minute at least
                last_line = time.time()
                log.info("step %d (epoch %d, %.1f s): minibatch objective %.4f, cross-entropy %.4f",
                         step, epoch + 1, time.time() - t0, loss.item(), ce.item())  # fmt: skip
        val_loss, val_acc = evaluate(model, *splits["val"])
        row = {
            "epoch": epoch + 1, "step": step, "lr": lr, "complete_epoch": end == spe,
            "train_loss": run_loss / run_n, "train_acc": run_correct / run_n,
            "val_loss": val_loss, "val_acc": val_acc, "seconds": time.time() - t0,
        }  # fmt: skip
        history.append(row)
        log.info(
            "epoch %d%s step %d: lr %.5f train cross-entropy %.4f acc %.4f | val %.4f acc %.4f | %.1f s",
            row["epoch"], "" if row["complete_epoch"] else " (partial)", step, lr,
            row["train_loss"], row["train_acc"], val_loss, val_acc, row["seconds"],
        )  # fmt: skip
        if snapshot is not None and step < target_step and time.time() - last_save >= snapshot_seconds:
            save_checkpoint(checkpoint_state(settings, step, model, optimizer, history), snapshot)
            last_save = time.time()
            log.info("resume snapshot at step %d: %s", step, snapshot)

    state = checkpoint_state(settings, step, model, optimizer, history)
    save_checkpoint(state, out)
    if snapshot is not None:
        snapshot.unlink(missing_ok=True)
    log.info("wrote %s (step %d)", out, step)
    return state


def checkpoint_state(settings: dict, step: int, model, optimizer, history: list[dict]) -> dict:
    """Everything needed to go on training exactly as an uninterrupted run would."""
    tr, ds, repeat = settings["train"], settings["dataset"], settings["repeat"]
    state = {
        "format": CHECKPOINT_FORMAT,
        "experiment": settings["experiment"],
        "repeat": repeat,
        "seed": settings["seed"],
        "step": step,
        "epoch": step / steps_per_epoch(ds, tr),
        "model": settings["model"],
        "train": tr,
        "dataset": ds,
        "model_fingerprint": model_fingerprint(settings["model"]),
        "data_fingerprint": data_fingerprint(ds, repeat),
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "history": list(history),
    }
    state["digest"] = tensor_digest(state)
    return state
