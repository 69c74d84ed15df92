"""The ``probes`` command line as a user meets it: ``check-config`` from anywhere, its messages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO


def probes(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "probes.cli", *args], cwd=cwd, capture_output=True, text=True)


def test_check_config_works_from_another_directory(tmp_path):
    config = tmp_path / "my.yaml"
    shutil.copy(REPO / "config.yaml", config)
    run = probes("check-config", "my.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout == "my.yaml: valid\n"


def test_the_schema_ships_in_the_package_and_only_there(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True)  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("probes-*.whl")
    assert "probes/schema/config.schema.yaml" in zipfile.ZipFile(wheel).namelist()
    assert [p.relative_to(REPO).as_posix() for p in REPO.rglob("*.schema.yaml")] == [
        "src/probes/schema/config.schema.yaml"
    ]
