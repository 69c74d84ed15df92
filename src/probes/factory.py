"""Models by import path: ``model: {factory: "package.module:callable", kwargs: {...}}``.

The factory is any callable returning an ``nn.Module`` (a class or a function), named as
``package.module:attr`` (importable; the working directory is searched too) or
``path/to/file.py:attr`` (relative to the working directory). The paper's models are two such
factories: ``probes.models:MnistConvnet`` and ``probes.models:DeepMLP``. A model's identity
(``model_fingerprint``) is its description plus the source of the factory's file, so editing
the model's code orphans its checkpoints and activations, while comments and formatting do not.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path

from .files import fingerprint
from .provenance import normalised_source


class FactoryError(ValueError):
    """A model factory that cannot be imported, called or loaded."""


def split_factory(factory: str) -> tuple[str, str]:
    """``(module or file, attribute)`` of a factory string, checked for its form."""
    where, sep, attr = factory.rpartition(":")
    if not sep or not where or not attr.isidentifier():
        raise FactoryError(f"model.factory = {factory!r}: expected 'package.module:callable' or "
                           "'path/to/file.py:callable'")  # fmt: skip
    return where, attr


def factory_file(factory: str) -> Path:
    """The source file a factory is defined in, found without importing it."""
    where, _ = split_factory(factory)
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise FactoryError(f"model.factory = {factory!r}: no file {path.resolve()}")
        return path
    _add_cwd()
    try:
        spec = importlib.util.find_spec(where)
    except (ImportError, ValueError) as exc:
        raise FactoryError(f"model.factory = {factory!r}: cannot find module {where!r} ({exc})") from exc
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise FactoryError(f"model.factory = {factory!r}: no module {where!r} on the Python path or in "
                           f"{os.getcwd()}")  # fmt: skip
    return Path(spec.origin)


def _add_cwd() -> None:
    """Make the working directory importable (a user's ``examples/model.py``), as ``python -m`` would."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


def load_factory(factory: str):
    """The callable a factory string names."""
    where, attr = split_factory(factory)
    try:
        if where.endswith(".py"):
            path = factory_file(factory)
            name = f"probes_user_{fingerprint(str(path.resolve()))}"
            module = sys.modules.get(name)
            if module is None:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
        else:
            _add_cwd()
            module = importlib.import_module(where)
    except FactoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the user's module, named
        raise FactoryError(f"model.factory = {factory!r}: importing {where!r} failed: "
                           f"{type(exc).__name__}: {exc}") from exc  # fmt: skip
    if not hasattr(module, attr):
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise FactoryError(f"model.factory = {factory!r}: module {where!r} has no {attr!r}; it has {public}")
    return getattr(module, attr)


def check_kwargs(factory: str, kwargs: dict) -> None:
    """Refuse keyword arguments the factory does not take, naming those it does."""
    fn = load_factory(factory)
    try:
        inspect.signature(fn).bind(**kwargs)
    except TypeError as exc:
        params = [p for p in inspect.signature(fn).parameters if p != "self"]
        raise FactoryError(f"model.kwargs = {kwargs}: {factory} does not take them ({exc}); it takes {params}") from exc


def build_model(spec: dict):
    """The ``nn.Module`` that ``spec`` (``{factory, kwargs}``) describes."""
    from torch import nn

    fn = load_factory(spec["factory"])
    kwargs = spec.get("kwargs", {})
    try:
        model = fn(**kwargs)
    except TypeError as exc:
        check_kwargs(spec["factory"], kwargs)
        raise FactoryError(f"model: {spec['factory']}(**{kwargs}) failed: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise FactoryError(
            f"model.factory = {spec['factory']!r} returned a {type(model).__name__}, not a torch nn.Module"
        )
    return model


def model_fingerprint(spec: dict) -> str:
    """Identifies a model description and the code of its factory's file (comments, docstrings and
    formatting aside, so reformatting the model file does not orphan checkpoints)."""
    source = normalised_source(factory_file(spec["factory"]).read_text())
    return fingerprint({"model": {"factory": spec["factory"], "kwargs": spec.get("kwargs", {})}, "source": source})
