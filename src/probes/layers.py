"""What a model offers to probe: every probe point's shape and width, from the model itself.

One forward pass on a single input, on PyTorch's meta device (no memory, no arithmetic) or, for a
model that cannot run there, on the CPU, with a hook on each module (``capture.py``). The result
is recorded once per model description, input shape and pooling (a small JSON file under
``<results>/.cache/points``), so the workflow reads it at start-up without building models.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .atomic import atomic_output
from .files import fingerprint

log = logging.getLogger(__name__)


def model_points(model) -> list[str]:
    """The points ``points: all`` means: the model's own ``points`` (module-path patterns) if it
    declares them, else the input, each top-level module and the output."""
    declared = getattr(model, "points", None)
    return list(declared) if declared else ["input", *(n for n, _ in model.named_children()), "output"]


def trace_shapes(spec: dict, in_shape: tuple[int, ...], patterns: list[str] | str, pools: dict[str, str],
                 everything: bool = False, dataset: str = "the dataset") -> list[dict]:  # fmt: skip
    """``{point, shape, width, pool, probed}`` (shape of one example, width after pooling) of every
    point ``patterns`` names (``"all"``: ``model_points``), in model order, and of ``output``
    (``probed`` false unless named); with ``everything``, of every module path, and ``error`` for
    those that cannot be probed."""
    import torch

    from .capture import PointError, checked, expand_points, module_paths, pool_of, pooled, run_hooked
    from .factory import build_model

    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                model = build_model(spec).eval()
                x = torch.zeros((1, *in_shape))
            wanted = expand_points(model, model_points(model) if patterns == "all" else patterns)
            points = ["input", *module_paths(model), "output"] if everything else wanted
            with torch.no_grad():
                got, calls, _ = run_hooked(model, points, x)
            break
        except PointError:
            raise
        except Exception as exc:  # noqa: BLE001 - some models only run on real tensors
            if device == "cpu":
                raise ValueError(f"the model ({spec['factory']}) cannot take one input of {dataset}, shape "
                                 f"{in_shape}: {type(exc).__name__}: {exc}") from exc  # fmt: skip
            log.info("meta-device forward failed (%s): on the CPU instead", exc)
    out = []
    for p in points if "output" in points else [*points, "output"]:
        how = pool_of(p, pools)
        try:
            t = checked(p, got, calls)
            out.append({"point": p, "shape": list(t.shape[1:]), "width": int(pooled(t, how).shape[1]), "pool": how,
                        "probed": p in wanted})  # fmt: skip
        except PointError as exc:
            if not everything:
                raise
            out.append({"point": p, "shape": None, "width": None, "pool": how, "probed": False, "error": str(exc)})
    return out


def point_shapes(spec: dict, in_shape: tuple[int, ...], patterns: list[str] | str, pools: dict[str, str],
                 cache: Path | None, dataset: str = "the dataset") -> list[dict]:  # fmt: skip
    """``trace_shapes`` of the probed points, read from (or recorded in) ``cache`` when given."""
    from .factory import model_fingerprint

    key = fingerprint({"model": model_fingerprint(spec), "input": list(in_shape), "points": patterns, "pools": pools})
    path = None if cache is None else Path(cache) / f"{key}.json"
    if path is not None and path.exists():
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            log.warning("%s: unreadable cached shapes; tracing the model again", path)
    shapes = trace_shapes(spec, in_shape, patterns, pools, dataset=dataset)
    if path is not None:
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(shapes))
    return shapes
