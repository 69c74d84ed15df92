"""The probe weights a probe job stores (one ``.npz`` per job, arrays ``<point>.<name>``) and
reads back, to warm-start the next checkpoint's probes or to reuse a probe, with the digest that
says when a stored probe is the one the same settings and data would fit again."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .atomic import atomic_output
from .estimator import as_rows
from .files import MEND, DamagedFileError


def save_weights(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Write a probe job's arrays to ``path`` (``.npz``) atomically."""
    with atomic_output(path) as tmp:
        np.savez(tmp, **arrays)


def probe_digest(probe_settings: dict, splits: list[tuple]) -> str:
    """A BLAKE2 digest of a probe's settings and the activations and labels of every split (block by
    block): equal digests, the same probe."""
    h = hashlib.blake2b(json.dumps(probe_settings, sort_keys=True).encode(), digest_size=16)
    for x, labels in splits:
        rows = as_rows(x)
        h.update(np.array([rows.n, rows.d], np.int64).tobytes())
        for _, block in rows:
            h.update(np.ascontiguousarray(block))  # its buffer: no copy of a wide block
        h.update(np.ascontiguousarray(labels, np.int64).tobytes())
    return h.hexdigest()


def previous_probes(path: Path, points: list[str]) -> dict[str, dict | None]:
    """Each point's probe record in a probe job's ``.npz`` (``C``, ``coef``, ``intercept``,
    ``converged``, ``reduced_rank``, ``digest`` or ``None``, and ``source``: ``path``); ``None``
    for a point whose probe had no fit (``C`` NaN)."""
    try:  # a cut file fails to open (no zip directory), a damaged one on its member's CRC
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as exc:
        raise DamagedFileError(f"{path}: unreadable probe weights ({type(exc).__name__}: {exc}): "
                               f"damaged or cut; {MEND}") from exc  # fmt: skip
    missing = [p for p in points if f"{p}.C" not in arrays]
    if missing:
        raise ValueError(f"{path}: no probe of {missing} (the job's points); it has {sorted(arrays)}")
    out = {}
    for p in points:
        C = float(arrays[f"{p}.C"])
        digest = str(arrays[f"{p}.digest"]) if f"{p}.digest" in arrays else None
        rank = int(arrays.get(f"{p}.reduced_rank", -1))
        out[p] = None if not np.isfinite(C) else {
            "C": C, "coef": arrays[f"{p}.coef"], "intercept": arrays[f"{p}.intercept"], "digest": digest,
            "converged": bool(arrays.get(f"{p}.converged", False)), "reduced_rank": None if rank < 0 else rank,
            "C_limit": str(arrays.get(f"{p}.C_limit", "")), "source": str(path),
        }  # fmt: skip
    return out
