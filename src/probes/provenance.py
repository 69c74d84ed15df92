"""Which code each stage's results depend on, as digests for Snakemake ``params``.

Snakemake's ``code`` rerun trigger only sees code written inside a rule; these
rules call the ``probes`` CLI, so each rule carries the digest of the modules its
stage runs instead. The digest is of the parsed source without docstrings, so
comments, docstrings and formatting change nothing; any other edit reruns the
stage (and, through its outputs, everything downstream).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import textwrap
from pathlib import Path

STAGE_MODULES = {
    "train": ("train", "models", "data", "mnist", "shapes"),
    "extract": ("extract", "activations", "train", "models", "data", "mnist", "shapes"),
    "probe": ("probe", "solver", "activations"),
    "aggregate": ("aggregate",),
    "plot": ("plots", "aggregate"),
}


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


@functools.lru_cache(maxsize=64)
def normalised_source(source: str) -> str:
    """``source`` parsed and dumped without docstrings: equal for code that differs only in
    comments, docstrings or formatting."""
    return ast.dump(_strip_docstrings(ast.parse(textwrap.dedent(source))))


def source_digest(*modules: str, package: Path = Path(__file__).parent) -> str:
    """Digest of the named modules of ``package`` (without docstrings, comments or formatting)."""
    h = hashlib.sha256()
    for name in sorted(set(modules)):
        h.update(f"{name}\n{normalised_source((package / f'{name}.py').read_text())}\n".encode())
    return h.hexdigest()[:16]


def stage_digest(stage: str) -> str:
    """The digest of the code a workflow stage (``train``, ``extract``, ``probe``, ...) runs."""
    return source_digest(*STAGE_MODULES[stage])
