"""The small files jobs hand each other: JSON records and CSV tables, written atomically and read
with checks, and the short fingerprints that identify a description.

A table is written with a digest beside it (``<stem>.digest.json``: its row count and SHA-256),
and every reader compares the two, so a table cut or changed after its job wrote it is refused,
naming it, instead of being drawn without the missing rows. Unreadable JSON is refused naming
its file. Each refusal says how to mend it: delete the file and rerun, which remakes it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from pathlib import Path

from .atomic import atomic_output

log = logging.getLogger(__name__)
MEND = "delete it and rerun the workflow (snakemake remakes it)"


class DamagedFileError(ValueError):
    """An output of an earlier job that is unreadable, incomplete or changed since it was written."""


def fingerprint(obj: object) -> str:
    """A short stable hash of a JSON-serialisable description."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def file_digest(path: Path | str, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes (``hashlib``'s ``algorithm``), read 1 MiB at a time."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(obj: object, path: Path) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


def read_json(path: Path | str) -> object:
    """The JSON in ``path``; a missing, cut or otherwise unreadable file is a ``DamagedFileError`` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedFileError(f"{path}: unreadable JSON ({exc}): it was damaged or cut; {MEND}") from exc


def digest_path(table: Path | str) -> Path:
    """Where the digest of table ``<stem>.csv`` is kept: ``<stem>.digest.json`` beside it."""
    table = Path(table)
    return table.with_name(f"{table.stem}.digest.json")


def write_csv(rows: list[dict], columns: list[str], out: Path | str) -> None:
    """Write ``rows`` (only ``columns``, in order) to ``out`` atomically, and its digest beside it."""
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    data = buf.getvalue().encode()
    write_json({"file": Path(out).name, "rows": len(rows), "sha256": hashlib.sha256(data).hexdigest()},
               digest_path(out))  # fmt: skip
    with atomic_output(out) as tmp:
        tmp.write_bytes(data)


def read_csv(path: Path | str) -> list[dict]:
    """The rows of a table written by ``write_csv``, after checking it against its digest.

    A table without a digest beside it (written by hand, say) is read with a warning."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DamagedFileError(f"{path}: cannot read it ({exc.strerror})") from exc
    rows = list(csv.DictReader(io.StringIO(data.decode(errors="replace"), newline="")))
    check = digest_path(path)
    if not check.exists():
        log.warning("%s: no digest %s beside it: read unchecked", path, check.name)
    else:
        want = read_json(check)
        got = hashlib.sha256(data).hexdigest()
        if not isinstance(want, dict) or want.get("sha256") != got:
            expected = f"{want.get('rows')} rows with SHA-256 {want.get('sha256')}" if isinstance(want, dict) else "?"
            raise DamagedFileError(
                f"{path}: {len(rows)} rows with SHA-256 {got}, but its job wrote {expected} ({check.name}): "
                f"the table was cut or changed after it was written; {MEND}"
            )
    return rows
