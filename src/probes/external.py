"""Checkpoints produced elsewhere: files of a directory matched to steps, identified by content.

``pattern`` is a file name with a ``{step}`` field (``step{step}.pt``, ``ckpt-{step}.pth``) or a
regular expression with a named group ``step`` (``re:epoch=(?P<step>\\d+)\\.ckpt``). A file's
identity for staleness is the SHA-256 of its bytes (``content_digest``), cached by size and
modification time, so touching a file reruns nothing and replacing it reruns its own jobs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .atomic import atomic_output
from .files import file_digest

DEFAULT_PATTERN = "step{step}.pt"  # checkpoints.pattern when not given


def step_regex(pattern: str) -> re.Pattern:
    """The regular expression a checkpoint file name pattern stands for."""
    if pattern.startswith("re:"):
        rx = re.compile(pattern[3:])
        if "step" not in rx.groupindex:
            raise ValueError(f"pattern {pattern!r}: the regular expression needs a named group (?P<step>...)")
        return rx
    if pattern.count("{step}") != 1:
        raise ValueError(f"pattern {pattern!r}: expected one {{step}} field (or 're:' and a regex with (?P<step>...))")
    head, tail = pattern.split("{step}")
    return re.compile(re.escape(head) + r"(?P<step>\d+)" + re.escape(tail))


def find_checkpoints(directory: Path, pattern: str, where: str = "checkpoints") -> dict[int, Path]:
    """Every file of ``directory`` whose name matches ``pattern``, by its step."""
    try:
        rx = step_regex(pattern)
    except (ValueError, re.error) as exc:
        raise ValueError(f"{where}.{exc}") from exc
    if not directory.is_dir():
        raise ValueError(f"{where}.dir = {str(directory)!r}: no such directory")
    found: dict[int, Path] = {}
    for path in sorted(directory.iterdir()):
        m = rx.fullmatch(path.name)
        if m and path.is_file() and not path.name.startswith("."):
            step = int(m["step"])
            if step in found:
                raise ValueError(f"{where}: {found[step].name} and {path.name} are both step {step}")
            found[step] = path
    return found


def content_digest(path: Path, cache: Path | None = None) -> str:
    """SHA-256 of ``path``'s bytes; with ``cache`` (a JSON file), reused while its size and
    modification time are unchanged."""
    st = path.stat()
    key, stamp = str(path.resolve()), [st.st_size, st.st_mtime_ns]
    known = {}
    if cache is not None and cache.exists():
        try:
            known = json.loads(cache.read_text())
        except (OSError, json.JSONDecodeError):
            known = {}
    if known.get(key, {}).get("stamp") == stamp:
        return known[key]["sha256"]
    sha256 = file_digest(path)
    if cache is not None:
        known[key] = {"stamp": stamp, "sha256": sha256}
        with atomic_output(cache) as tmp:
            tmp.write_text(json.dumps(known))
    return sha256
