"""Which code each stage's results depend on, as digests for Snakemake ``params``.

Snakemake's ``code`` rerun trigger only sees code written inside a rule; these
rules call the ``probes`` CLI, so each rule carries the digest of the modules its
stage runs instead: its entry module and every package module it imports,
transitively, found by parsing the imports (so a module a stage starts to use is
covered without a list to keep). The digest is of the parsed source without docstrings, so
comments, docstrings and formatting change nothing; any other edit reruns the
stage (and, through its outputs, everything downstream).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).parent
STAGE_ENTRY = {"train": "train", "extract": "extract", "probe": "probe", "aggregate": "aggregate", "plot": "plots"}


def package_imports(module: str, package: Path = PACKAGE) -> set[str]:
    """The modules of ``package`` that ``module`` imports, anywhere in its source (``from .x``,
    ``from . import x``, ``from probes.x``, ``import probes.x``)."""
    found = set()
    for node in ast.walk(ast.parse((package / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and not (node.module or "").startswith(f"{package.name}."):
                continue
            base = (node.module or "").removeprefix(f"{package.name}.") if node.level == 0 else node.module
            names = [base.split(".")[0]] if base else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith(f"{package.name}.")]
        else:
            continue
        found.update(n for n in names if (package / f"{n}.py").exists())
    return found


def stage_modules(stage: str, package: Path = PACKAGE) -> tuple[str, ...]:
    """Every module of the package a stage's code runs: its entry module and all it imports, transitively."""
    seen, todo = set(), [STAGE_ENTRY[stage]]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(package_imports(module, package) - seen)
    return tuple(sorted(seen))


STAGE_MODULES = {stage: stage_modules(stage) for stage in STAGE_ENTRY}


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


def source_digest(*modules: str, package: Path = PACKAGE) -> str:
    """Digest of the named modules of ``package`` (without docstrings, comments or formatting)."""
    h = hashlib.sha256()
    for name in sorted(set(modules)):
        h.update(f"{name}\n{normalised_source((package / f'{name}.py').read_text())}\n".encode())
    return h.hexdigest()[:16]


def stage_digest(stage: str) -> str:
    """The digest of the code a workflow stage (``train``, ``extract``, ``probe``, ...) runs."""
    return source_digest(*STAGE_MODULES[stage])
