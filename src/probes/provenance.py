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


def module_path(module: str, package: Path = PACKAGE) -> Path | None:
    """The source of ``module`` (dotted, within ``package``): ``a/b.py`` or ``a/b/__init__.py``, if either exists."""
    base = package.joinpath(*module.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def package_imports(module: str, package: Path = PACKAGE) -> set[str]:
    """The modules of ``package`` that ``module`` imports, anywhere in its source (``from .x``,
    ``from . import x``, ``from ..x`` in a subpackage, ``from probes.x``, ``import probes.x``), each
    with the packages above it (importing ``a.b`` runs ``a/__init__.py``)."""
    path = module_path(module, package)
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]  # relative imports' start
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] != package.name:
                    continue
                base = parts[1:]
            elif node.level - 1 <= len(here):
                base = here[: len(here) - node.level + 1] + (node.module.split(".") if node.module else [])
            else:
                continue
            candidates = [base, *(base + [a.name] for a in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [a.name.split(".")[1:] for a in node.names if a.name.startswith(f"{package.name}.")]
        else:
            continue
        for parts in candidates:
            found.update(n for i in range(1, len(parts) + 1) if module_path(n := ".".join(parts[:i]), package))
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
        h.update(f"{name}\n{normalised_source(module_path(name, package).read_text())}\n".encode())
    return h.hexdigest()[:16]


def stage_digest(stage: str) -> str:
    """The digest of the code a workflow stage (``train``, ``extract``, ``probe``, ...) runs."""
    return source_digest(*STAGE_MODULES[stage])
