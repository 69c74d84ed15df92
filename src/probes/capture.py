"""Probe points by module path: what a model computes at each, captured by forward hooks.

A probe point is a module path as ``model.named_modules()`` spells it (``layer2.1.bn2``),
``input`` (the model's input) or ``output`` (its output). Patterns may be globs, expanded in the model's module order: ``*`` and
``?`` stay within one path component (``layer1.*`` is ``layer1.0``, ``layer1.1``, not their
children), ``**`` spans components (``layer1.**.relu``). ``capture(model, points, x)`` runs one
forward pass with a hook on every point's module and returns each point's activation, flattened
to ``(batch, width)`` after its pooling: ``mean`` or ``max`` over the spatial or token axes (every
axis after the first two of a ``(batch, channels, ...)`` tensor, axis 1 of a ``(batch, tokens,
features)`` one), or ``none``. No tracing: any forward, data-dependent control flow included.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable

import torch
from torch import nn

POOLS = ("none", "mean", "max")
SPECIAL = ("input", "output")


class PointError(ValueError):
    """A probe point that names no module, or whose module's output cannot be probed."""


@functools.lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern:
    parts = re.split(r"(\*\*|\*|\?)", pattern)
    rx = {"**": ".*", "*": "[^.]*", "?": "[^.]"}
    return re.compile("".join(rx.get(p, re.escape(p)) for p in parts))


def matches(path: str, pattern: str) -> bool:
    """Whether module path ``path`` matches glob ``pattern`` (see the module docstring)."""
    return _glob(pattern).fullmatch(path) is not None


def module_paths(model: nn.Module) -> list[str]:
    """Every module path of ``model`` in its order, without the root (``""``)."""
    return [name for name, _ in model.named_modules() if name]


def expand_points(model: nn.Module, patterns: Iterable[str]) -> list[str]:
    """The probe points ``patterns`` name, in model order (``input`` first, ``output`` last), each once.

    A pattern that matches nothing is a ``PointError`` listing the nearest module paths."""
    paths = module_paths(model)
    chosen: set[str] = set()
    for pattern in patterns:
        found = [p for p in (*SPECIAL, *paths) if matches(p, pattern)]
        if not found:
            near = difflib.get_close_matches(pattern, paths, n=6, cutoff=0.3) or paths[:6]
            raise PointError(f"point {pattern!r} matches no module of {type(model).__name__}; nearest module "
                             f"paths: {near} (`probes layers <experiment>` lists them all)")  # fmt: skip
        chosen.update(found)
    return [p for p in ("input", *paths, "output") if p in chosen]


def pool_of(point: str, pools: dict[str, str]) -> str:
    """The pooling of ``point``: the first pattern of ``pools`` (in order) matching it, else ``none``."""
    return next((how for pattern, how in pools.items() if matches(point, pattern)), "none")


def pooled(t: torch.Tensor, how: str) -> torch.Tensor:
    """``t`` pooled over its spatial / token axes (``mean``, ``max``) or not (``none``), then flattened."""
    if how == "none" or t.dim() <= 2:
        return t.flatten(1)
    axes = tuple(range(2, t.dim())) if t.dim() >= 4 else (1,)
    return (t.mean(dim=axes) if how == "mean" else t.amax(dim=axes)).flatten(1)


def run_hooked(model: nn.Module, points: list[str], x: torch.Tensor) -> tuple[dict, dict[str, int], object]:
    """One forward pass with a hook on every point's module: each module's output (its last call),
    how many times it ran, and the model's output (``input`` and ``output`` included as points)."""
    modules = dict(model.named_modules())
    got: dict[str, object] = {}
    calls: dict[str, int] = {}

    def hook(name: str):
        def keep(_module, _inputs, out) -> None:
            calls[name] = calls.get(name, 0) + 1
            got[name] = out

        return keep

    handles = [modules[p].register_forward_hook(hook(p)) for p in points if p not in SPECIAL]
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    got["input"], got["output"] = x, out
    calls["input"] = calls["output"] = 1
    return got, calls, out


def checked(point: str, got: dict, calls: dict[str, int]) -> torch.Tensor:
    """The one tensor a point's module produced, or a ``PointError`` saying why it cannot be probed."""
    if point not in got:
        raise PointError(f"point {point!r}: its module did not run in the forward pass")
    if calls[point] != 1:
        raise PointError(f"point {point!r}: its module ran {calls[point]} times in one forward pass (a shared "
                         "module); probe a module that runs once")  # fmt: skip
    if not torch.is_tensor(got[point]):
        raise PointError(f"point {point!r}: its module returned a {type(got[point]).__name__}, not a tensor")
    return got[point]


def capture(model: nn.Module, points: list[str], x: torch.Tensor, pools: dict[str, str] | None = None,
            ) -> tuple[dict[str, torch.Tensor], object]:  # fmt: skip
    """Each point's activation ``(batch, width)`` (pooled) in one forward pass of ``model`` on ``x``, and the output."""
    got, calls, out = run_hooked(model, points, x)
    return {p: pooled(checked(p, got, calls), pool_of(p, pools or {})) for p in points}, out
