"""Atomic outputs: write under a temporary name, rename only once complete."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class DiskFullError(OSError):
    """No space left on the device an output was being written to."""


FULL = {errno.ENOSPC: "No space left on device", errno.EDQUOT: "Disk quota exceeded"}


def disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from or while handling, reports a full
    disk or quota (HDF5 raises it as a RuntimeError from closing the file, the errno in its
    message only)."""
    while exc is not None:
        if (isinstance(exc, OSError) and exc.errno in FULL) or any(m in str(exc) for m in FULL.values()):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextmanager
def atomic_output(path: Path | str) -> Iterator[Path]:
    """Yield ``<stem>.part<suffix>`` beside ``path``; rename it to ``path`` if the block succeeds.

    On any error the partial file is removed, so nothing half-written ever
    carries the final name; a full disk is reported as a ``DiskFullError`` naming
    ``path`` and the space left. The suffix is kept so writers that infer the
    format from it (matplotlib, numpy) still do.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.part{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as exc:
        if not disk_full(exc) or isinstance(exc, DiskFullError):
            raise
        tmp.unlink(missing_ok=True)
        free = shutil.disk_usage(path.parent).free / 2**20
        raise DiskFullError(
            errno.ENOSPC,
            f"{path}: disk full (or over quota) while writing it; the partial file was removed, after which "
            f"{free:.1f} MB are free on the file system of {path.parent}: free some space (or point `results` "
            "elsewhere) and rerun",
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
