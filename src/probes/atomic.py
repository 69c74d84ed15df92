"""Atomic outputs: write under a temporary name, rename only once complete."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output(path: Path | str) -> Iterator[Path]:
    """Yield ``<stem>.part<suffix>`` beside ``path``; rename it to ``path`` if the block succeeds.

    On any error the partial file is removed, so nothing half-written ever
    carries the final name. The suffix is kept so writers that infer the format
    from it (matplotlib, numpy) still do.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.part{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
