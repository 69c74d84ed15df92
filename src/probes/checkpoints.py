"""Checkpoints: the pipeline's own (written by ``train.py``) and those of someone else's training.

The pipeline's checkpoint is a dict of format ``CHECKPOINT_FORMAT`` holding everything needed to
resume training exactly (model and optimizer state, RNG, history, settings) and a SHA-256 of its
tensors, checked on every load. A foreign checkpoint (``load_weights``) is whatever a training
script saved: a plain ``state_dict``, or a dict holding one under a common key (``state_dict``,
``model``, ``model_state_dict``, ``net``; PyTorch Lightning's ``state_dict`` with its ``model.``
prefix), loaded into the experiment's model with every mismatch named.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from .atomic import atomic_output
from .factory import model_fingerprint

CHECKPOINT_FORMAT = 3  # 3: models by factory; 2: with a digest of its tensors
STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "weights")


class CheckpointError(RuntimeError):
    """A checkpoint that is unreadable or does not belong where it is used."""


def tensor_digest(state: dict) -> str:
    """SHA-256 of the model's and the optimizer's tensors and the RNG state (torch does not
    checksum what it loads)."""
    h = hashlib.sha256()
    tensors = [*state["state_dict"].items(), ("torch_rng", state["torch_rng"])]
    for key, group in sorted(state["optimizer"]["state"].items()):
        tensors += [(f"opt.{key}.{name}", t) for name, t in sorted(group.items()) if torch.is_tensor(t)]
    for name, t in tensors:
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(state: dict, path: Path) -> None:
    """Write ``state`` to ``path`` atomically (a temporary name, then rename)."""
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def _load(path: Path, weights_only: bool) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:  # any unpickling failure means a damaged (or partly written) file
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from exc


def load_checkpoint(path: Path, settings: dict | None = None) -> dict:
    """Load a pipeline checkpoint, checking it matches ``settings`` (an experiment's train settings)."""
    state = _load(path, weights_only=False)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a probes checkpoint of format {CHECKPOINT_FORMAT}")
    if state["digest"] != tensor_digest(state):
        raise CheckpointError(f"{path}: damaged: its tensors do not match the digest saved with them")
    if settings is not None:
        want = model_fingerprint(settings["model"])
        if state["model_fingerprint"] != want:
            raise CheckpointError(
                f"{path}: model fingerprint {state['model_fingerprint']} does not match {want} of "
                f"experiment {settings['experiment']!r} (another experiment or an older model definition)"
            )
        for key in ("experiment", "repeat"):
            if state[key] != settings[key]:
                raise CheckpointError(f"{path}: {key} is {state[key]!r}, expected {settings[key]!r}")
    return state


def find_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """The parameter dict inside a foreign checkpoint (see the module docstring)."""
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values()):
        return dict(obj)
    if isinstance(obj, dict):
        for key in STATE_KEYS:
            if key in obj and isinstance(obj[key], (dict, torch.nn.Module)):
                state = find_state_dict(obj[key], path)
                if key == "state_dict" and "pytorch-lightning_version" in obj:
                    state = {k.removeprefix("model."): v for k, v in state.items()}
                return state
        raise CheckpointError(f"{path}: no state_dict found; its keys are {sorted(map(str, obj))[:20]}, none of "
                              f"{list(STATE_KEYS)} holding the model's parameters")  # fmt: skip
    raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state_dict or a dict holding one")


def load_weights(path: Path, model: torch.nn.Module) -> None:
    """Load a foreign checkpoint's parameters into ``model``, naming every mismatch."""
    try:
        obj = _load(path, weights_only=True)
    except CheckpointError:
        obj = _load(path, weights_only=False)  # pickled objects beyond tensors (Lightning hyperparameters)
    state = find_state_dict(obj, path)
    own = model.state_dict()
    if set(state) != set(own) and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k.removeprefix("module."): v for k, v in state.items()}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model"
              for k in sorted(set(own) & set(state)) if tuple(state[k].shape) != tuple(own[k].shape)]  # fmt: skip
    if missing or unexpected or shapes:
        parts = [f"missing {missing[:10]}{' ...' if len(missing) > 10 else ''}" if missing else "",
                 f"unexpected {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}" if unexpected else "",
                 f"shape mismatches {shapes[:10]}" if shapes else ""]  # fmt: skip
        raise CheckpointError(f"{path}: does not fit the model {type(model).__name__}: "
                              + "; ".join(p for p in parts if p))  # fmt: skip
    model.load_state_dict(state)
